import sys
import time
from dataclasses import asdict
from pathlib import Path

from snakemake.exceptions import WorkflowError

# The s2basemap package lives in src/. Import it from there even when it was
# not pip-installed; jobs find it through the workflow/scripts/s2basemap link
# (Snakemake puts a script's directory on sys.path, conda envs included).
sys.path.insert(0, str(Path(workflow.basedir).parent / "src"))

from s2basemap import config as cfg
from s2basemap import failures, notify, upload
from s2basemap.aoi import read_aoi
from s2basemap.fetch import fetch_spec
from s2basemap.grid import COLUMN_ID_PATTERN, output_grid, scene_columns
from s2basemap.manifest import read_manifest, scene, scene_ids, scenes_by_tile
from s2basemap.masks import MaskOptions
from s2basemap.ocm import weight_paths
from s2basemap.periods import PERIOD_LABEL_PATTERN
from s2basemap.provenance import code_digest
from s2basemap.storage import DiskSpaceError, check_disk, load_plan

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

PERIODS = {period.label: period for period in cfg.periods(config)}
# position of each period in time, asked for by every per-scene job
PERIOD_ORDER = {label: index for index, label in enumerate(sorted(PERIODS))}
WORK = config["work_dir"]
RESULTS = config["results_dir"]
BASE = config["output"]["filename_base"]
AOI = read_aoi(config["aoi"])
GRID = output_grid(
    AOI,
    config["target"]["crs"],
    cfg.resolution(config),
    config["target"]["tile_size"],
)
TILES = GRID.tile_ids(AOI.in_crs(GRID.crs))
TILE_FOOTPRINTS = {tile: GRID.tile_footprint_4326(tile) for tile in TILES}
COLUMNS = GRID.columns(TILES)
KEEP_SCENE_RASTERS = config["storage"]["keep_scene_rasters"]


def intermediate(path):
    """Scene rasters, masks and composites: deleted once their month's tiles and products
    are written, unless storage.keep_scene_rasters keeps them for cheap reruns."""
    return path if KEEP_SCENE_RASTERS else temp(path)


PRODUCTS_KEPT = config["upload"]["keep_local"]


def uploaded(path):
    """A month's mosaic and count COGs: deleted once uploaded (and read for the
    metadata) when upload.keep_local is false."""
    return path if PRODUCTS_KEPT else temp(path)


MONTHS_IN_FLIGHT = config["storage"]["months_in_flight"]
# A rule's jobs rerun when package code its script imports (at any depth) changes.
SCRIPTS = Path(workflow.basedir) / "scripts"
CODE = {
    stage: code_digest(SCRIPTS / script)
    for stage, script in {
        "search": "search.py",
        "fetch": "fetch_scene.py",
        "mask": "mask_scene.py",
        "composite": "composite_column.py",
        "assemble": "assemble_mosaic.py",
        "metadata": "period_metadata.py",
    }.items()
}
LOGS = f"{WORK}/logs"
BENCHMARKS = f"{WORK}/benchmarks"
# the run's count of scenes failing in a row for network reasons (s2basemap.failures)
OUTAGE_FILE = f"{WORK}/fetch_outage.json"
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
    column=COLUMN_ID_PATTERN,
    dates=r"[0-9]{4}_[0-9]{2}_[0-9]{2}_to_[0-9]{4}_[0-9]{2}_[0-9]{2}",


def manifest_path(period):
    return f"{WORK}/{period}/manifest.json"


_DISK_CHECKED = []


def planned(period):
    """Wait for the storage plan; on a real run, refuse to go on without the disk for it.

    Every per-scene job of a period not yet completed is created through here,
    so a refusal comes before any fetch. Completed periods skip the wait: the
    plan is global, and its rerun (a month added, scene lists refreshed) must
    not hold up months that are already done.
    """
    if Path(f"{RESULTS}/{period}/metadata.json").exists():
        return None
    plan = load_plan(checkpoints.plan.get().output.plan)
    if (
        config["storage"]["check_free_disk"]
        and not workflow.dryrun
        and not _DISK_CHECKED
    ):
        try:
            check_disk(plan, WORK, RESULTS, config["storage"]["free_disk_limit_gb"])
        except DiskSpaceError as exc:
            raise WorkflowError(str(exc)) from None
        _DISK_CHECKED.append(True)
    return plan


def period_scenes(wildcards):
    """Scene ids of a period, once the period is searched and the run is planned."""
    planned(wildcards.period)
    return scene_ids(period_manifest(wildcards))


def period_files(wildcards, pattern):
    """One path per scene of the period, e.g. pattern "masks/{scene}.json"."""
    return expand(
        f"{WORK}/{wildcards.period}/{pattern}", scene=period_scenes(wildcards)
    )


def scene_fetch_spec(wildcards):
    """Only what decides the pixels, so unchanged scenes keep their params (and outputs)."""
    manifest = read_manifest(manifest_path(wildcards.period))
    return fetch_spec(scene(manifest, wildcards.scene))


def composite_setting(name):
    """A composite setting of the job's period, overrides applied."""
    return lambda wildcards: cfg.composite_settings(config, wildcards.period)[name]


def period_bounds(wildcards):
    period = PERIODS[wildcards.period]
    return {"start": period.start.isoformat(), "end": period.end.isoformat()}


def period_manifest(wildcards):
    return read_manifest(
        checkpoints.search.get(period=wildcards.period).output.manifest
    )


_TILE_SCENES = {}


def scenes_by_column(period):
    """For each column, the ids of the period's scenes that touch each of its tiles,
    and each scene's (first, last) tile column; computed once per manifest."""
    manifest = read_manifest(manifest_path(period))
    # read_manifest hands back the same object until the file changes
    cached = _TILE_SCENES.get(period)
    if cached is None or cached[0] is not manifest:
        by_tile = scenes_by_tile(manifest, TILE_FOOTPRINTS)
        by_column = {
            column: {tile: by_tile[tile] for tile in tiles}
            for column, tiles in COLUMNS.items()
        }
        cached = (manifest, by_column, scene_columns(by_tile))
        _TILE_SCENES[period] = cached
    return cached[1], cached[2]


def column_tile_scenes(wildcards):
    """Tile id -> the ids of the period's scenes that touch the tile, in the column."""
    return scenes_by_column(wildcards.period)[0][wildcards.column]


def column_inputs(wildcards):
    """The AOI and the scene rasters and masks of the period's scenes that touch the column."""
    planned(wildcards.period)
    period_manifest(wildcards)
    by_tile = column_tile_scenes(wildcards)
    scenes = list(dict.fromkeys(s for tile in sorted(by_tile) for s in by_tile[tile]))
    # plain formats, not expand(): this runs for each column of every month
    period = f"{WORK}/{wildcards.period}"
    return {
        "aoi": rules.prepare_aoi.output[0],
        "scenes": [f"{period}/scenes/{scene}.tif" for scene in scenes],
        "masks": [f"{period}/masks/{scene}.tif" for scene in scenes],
    }


# Job priorities: a month's work goes west to east, so a scene's raster is fetched
# about when the first column that needs it is next, and deleted (temp) once its
# last column is composited; composites and masks go before more fetches.
WEIGHTS_PRIORITY = 4_000_000_000  # before anything: missing weights stop the run early
# a finished month's mosaic, metadata and upload before more of the next month's
# work: its composites (and products not kept) then go early, as the plan models
OUTPUTS_PRIORITY = 3_500_000_000
COMPOSITE_PRIORITY = 3_000_000_000
MASK_PRIORITY = 2_000_000_000
FETCH_PRIORITY = 1_000_000_000


def sweep_priority(base):
    """Earlier months first, then scenes by their first tile column, west first."""

    def priority(wildcards):
        month = PERIOD_ORDER[wildcards.period]
        first_column = scenes_by_column(wildcards.period)[1].get(
            wildcards.scene, (0, 0)
        )[0]
        return base - month * 1_000_000 - first_column

    return priority


def earlier_period_composited(wildcards):
    """Backpressure: the marker of the period MONTHS_IN_FLIGHT places earlier, whose
    columns must all be done (its temporary scene rasters gone) before this period's
    fetches start. Nothing when scene rasters are kept or there is no limit."""
    index = PERIOD_ORDER[wildcards.period]
    if KEEP_SCENE_RASTERS or MONTHS_IN_FLIGHT is None or index < MONTHS_IN_FLIGHT:
        return []
    return ancient(f"{WORK}/{sorted(PERIODS)[index - MONTHS_IN_FLIGHT]}/tiles.done")


def column_file(period, column):
    return f"{WORK}/{period}/columns/{column}.tif"


def period_column_files(wildcards):
    """Every column composite of a period that has scenes (none for an empty period)."""
    if not period_manifest(wildcards)["scenes"]:
        return []
    return [column_file(wildcards.period, column) for column in COLUMNS]


def product_files(period):
    stem = f"{RESULTS}/{period}/{BASE}_{PERIODS[period].filename_dates}"
    return {
        "mosaic": f"{stem}.tif",
        "counts": f"{stem}_count.tif",
        "quicklook": f"{stem}_quicklook.png",
    }


def metadata_inputs(wildcards):
    """Everything a period's metadata needs; the mosaic only when there are scenes."""
    inputs = {
        "manifest": manifest_path(wildcards.period),
        "summary": f"{WORK}/{wildcards.period}/scenes.json",
        "aoi": rules.prepare_aoi.output[0],
        "records": period_files(wildcards, "scenes/{scene}.json"),
        "stats": period_files(wildcards, "masks/{scene}.json"),
    }
    if period_manifest(wildcards)["scenes"]:
        inputs |= product_files(wildcards.period)
    return inputs


def upload_destination(period):
    """Where the period's products end up, for the month's message."""
    if not config["upload"]["enabled"]:
        return str(Path(RESULTS, period).resolve())
    return upload.destination(config["upload"], period)


def upload_inputs(wildcards):
    """A period's products (when it has any), metadata and STAC Item."""
    inputs = metadata_inputs(wildcards)
    products = {k: inputs[k] for k in ("mosaic", "counts", "quicklook") if k in inputs}
    return products | {
        "metadata": f"{RESULTS}/{wildcards.period}/metadata.json",
        "item": f"{RESULTS}/{wildcards.period}/item.json",
    }


def report_requested(argv):
    """Whether this is `snakemake --report ...` (the Snakefile is read before the
    report is made, and Snakemake tells it nothing else)."""
    return any(arg == "--report" or arg.startswith("--report=") for arg in argv)


def check_report_possible():
    """`--report` shows finished months: before any, say so instead of Snakemake's
    complaint about a missing statistics.tsv."""
    done = [p for p in PERIODS if Path(f"{RESULTS}/{p}/metadata.json").exists()]
    if report_requested(sys.argv) and not done:
        raise WorkflowError(
            f"No month is finished yet ({', '.join(PERIODS)}), so there is nothing to "
            "report: run `snakemake` first, then `snakemake --report report.html`."
        )


check_report_possible()


def all_targets():
    # the model's weights first: missing ones stop the run before any search
    targets = OCM_WEIGHTS if MASK_USES_OCM else []
    targets += [f"{RESULTS}/{period}/metadata.json" for period in PERIODS]
    if config["upload"]["enabled"]:
        targets += [f"{WORK}/{period}/upload.json" for period in PERIODS]
    return targets


NOTIFIER = notify.Notifier(config["notify"]["webhook_env"])
STARTED = time.monotonic()


def on_start():
    failures.reset_outage(OUTAGE_FILE)  # an outage stops one run, not the next
    NOTIFIER.send(notify.start_message(list(PERIODS), config["aoi"], str(Path.cwd())))


def notify_summary():
    elapsed = time.strftime("%H:%M:%S", time.gmtime(time.monotonic() - STARTED))
    paths = [Path(f"{RESULTS}/{period}/metadata.json") for period in PERIODS]
    NOTIFIER.send(notify.summary_message(paths, elapsed))


def on_error(snakemake_log):
    """One line (and one message) per month left unpublished by unreadable scenes,
    with the command that fetches just those; a message per other failed job."""
    waiting = failures.waiting_months(
        WORK, PERIODS, lambda period: Path(f"{RESULTS}/{period}/metadata.json").exists()
    )
    resume = failures.resume_command(sys.argv)
    for verdict in waiting:
        print(f"ERROR {verdict.line(resume)}", file=sys.stderr, flush=True)
        NOTIFIER.send(f":x: {verdict.line(resume)}\n{verdict.listing()}")
    covered = {verdict.period for verdict in waiting}
    notify.report_errors(
        NOTIFIER,
        snakemake_log,
        Path.cwd(),
        skip=lambda job: job["rule"] in ("fetch_scene", "scene_summary")
        and notify.job_period(job) in covered,
    )
