# Setup, read once as the workflow is parsed: the validated config, the AOI and
# the output grid every rule works on, and the code digests that rerun jobs.
import sys
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The s2basemap package lives in src/. Import it from there even when it was
# not pip-installed; jobs find it through the workflow/scripts/s2basemap link
# (Snakemake puts a script's directory on sys.path, conda envs included).
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))

from s2basemap import config as cfg
from s2basemap.aoi import read_aoi
from s2basemap.grid import COLUMN_ID_PATTERN, output_grid
from s2basemap.inventory import install_s3_inventory
from s2basemap.masks import MaskOptions
from s2basemap.periods import PERIOD_LABEL_PATTERN
from s2basemap.provenance import code_digest
from s2basemap.runlock import claim
from s2basemap.stopping import install_sigterm_workaround

# Before Snakemake locks the directory: locks left by a run killed without warning
# (a reclaimed box) are removed here, so that the same command resumes.
if workflow.is_main_process:
    # SIGTERM (SLURM's time limit, a spot reclaim) must stop the run, never hang it
    install_sigterm_workaround()
    # on S3 storage: one listing of the run's objects, not three requests per file
    if workflow.storage_settings.default_storage_provider == "s3":
        install_s3_inventory(workflow.storage_settings.default_storage_prefix)
    RUN_CLAIM = claim()
    if RUN_CLAIM.message:
        print(f"s2basemap: {RUN_CLAIM.message}", file=sys.stderr, flush=True)

# A --configfile (or --config) is merged over config/config.yaml key by key, but
# one that names the periods replaces both of the default's: a user config with
# only date_ranges must not inherit the default's months.
cfg.replace_periods(config, workflow.config_settings.overwrite_config)
# and one that names a STAC url or collection but no source means that API as before
cfg.replace_source(config, workflow.config_settings.overwrite_config)
try:
    cfg.validate_config(
        config, Path(workflow.basedir) / "schemas" / "config.schema.yaml"
    )
except cfg.ConfigError as exc:
    raise WorkflowError(f"Invalid configuration: {exc}") from None


def config_provider(*keys):
    """A rule's param that is one config key, named where the rule uses it (PyPSA-Eur's idiom)."""
    return lambda wildcards: cfg.lookup(config, keys)


def composite_setting(name):
    """A composite setting of the job's period, overrides applied."""
    return lambda wildcards: cfg.composite_settings(config, wildcards.period)[name]


PERIODS = {period.label: period for period in cfg.periods(config)}
# position of each period in time, asked for by every per-scene job
PERIOD_ORDER = {label: index for index, label in enumerate(sorted(PERIODS))}
AOI = read_aoi(config["aoi"])
GRID = output_grid(
    AOI, config["target"]["crs"], cfg.resolution(config), config["target"]["tile_size"]
)
TILES = GRID.tile_ids(AOI.in_crs(GRID.crs))
TILE_FOOTPRINTS = {tile: GRID.tile_footprint_4326(tile) for tile in TILES}
COLUMNS = GRID.columns(TILES)
MASK_USES_OCM = MaskOptions.from_config(config["mask"]).uses_ocm
# A rule's jobs rerun when package code its script imports (at any depth) changes.
CODE = {
    stage: code_digest(Path(workflow.basedir) / "scripts" / f"{script}.py")
    for stage, script in {
        "search": "search",
        "fetch": "fetch_scene",
        "mask": "mask_scene",
        "composite": "composite_column",
        "assemble": "assemble_mosaic",
        "dates": "assemble_dates",
        "metadata": "period_metadata",
        "collection": "series_collection",
    }.items()
}


wildcard_constraints:
    period=PERIOD_LABEL_PATTERN,
    scene=r"[A-Za-z0-9][A-Za-z0-9_.\-]*",
    column=COLUMN_ID_PATTERN,
    dates=r"[0-9]{4}_[0-9]{2}_[0-9]{2}_to_[0-9]{4}_[0-9]{2}_[0-9]{2}",
