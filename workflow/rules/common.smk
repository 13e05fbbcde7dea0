import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The s2basemap package lives in src/. Import it from there even when it was
# not pip-installed; jobs find it through the workflow/scripts/s2basemap link
# (Snakemake puts a script's directory on sys.path, conda envs included).
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))

from s2basemap import config as cfg
from s2basemap.fetch import fetch_spec
from s2basemap.manifest import read_manifest, scene, scene_ids
from s2basemap.masks import MaskOptions
from s2basemap.ocm import weight_paths
from s2basemap.periods import PERIOD_LABEL_PATTERN

try:
    cfg.validate_config(
        config, Path(workflow.basedir) / "schemas" / "config.schema.yaml"
    )
except cfg.ConfigError as exc:
    raise WorkflowError(f"Invalid configuration: {exc}") from None

PERIODS = {period.label: period for period in cfg.periods(config)}
WORK = config["work_dir"]
RESULTS = config["results_dir"]
LOGS = f"{WORK}/logs"
BENCHMARKS = f"{WORK}/benchmarks"
MASK_USES_OCM = MaskOptions.from_config(config["mask"]).uses_ocm
OCM_WEIGHTS = [
    str(path)
    for path in weight_paths(
        config["mask"]["ocm"]["weights_dir"], config["mask"]["ocm"]["model_version"]
    )
]


wildcard_constraints:
    period=PERIOD_LABEL_PATTERN,
    scene=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",


def manifest_path(period):
    return f"{WORK}/{period}/manifest.json"


def period_scenes(wildcards):
    """Scene ids of a period; defers the DAG until its search checkpoint has run."""
    manifest = checkpoints.search.get(period=wildcards.period).output.manifest
    return scene_ids(read_manifest(manifest))


def period_files(wildcards, pattern):
    """One path per scene of the period, e.g. pattern "masks/{scene}.json"."""
    return expand(
        f"{WORK}/{wildcards.period}/{pattern}", scene=period_scenes(wildcards)
    )


def scene_fetch_spec(wildcards):
    """Only what decides the pixels, so unchanged scenes keep their params (and outputs)."""
    manifest = read_manifest(manifest_path(wildcards.period))
    return fetch_spec(scene(manifest, wildcards.scene))


def period_bounds(wildcards):
    period = PERIODS[wildcards.period]
    return {"start": period.start.isoformat(), "end": period.end.isoformat()}


def all_targets():
    return [f"{WORK}/{period}/scenes.json" for period in PERIODS]
