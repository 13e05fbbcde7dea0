# Input functions: what a job needs, known once a period is searched and planned.
from s2basemap import catalog, upload
from s2basemap.acquisitions import scene_facts
from s2basemap.fetch import fetch_spec
from s2basemap.grid import scene_columns
from s2basemap.manifest import (
    column_scene_ids,
    read_manifest,
    scene,
    scene_ids,
    scenes_by_tile,
)
from s2basemap.outputs import PRODUCT_FILES
from s2basemap.storage import DiskSpaceError, check_disk, load_plan

_DISK_CHECKED = []


def planned(period):
    """Wait for the storage plan; on a real run, refuse to go on without the disk for it.

    Every per-scene job of a period not yet completed is created through here,
    so a refusal comes before any fetch. Completed periods skip the wait: the
    plan is global, and its rerun (a month added, scene lists refreshed) must
    not hold up months that are already done.
    """
    # a job's own process (a cluster or cloud job) runs what the main process planned
    if not workflow.is_main_process or published(period):
        return None
    plan = load_plan(local_copy(checkpoints.plan.get().output.plan))
    # on object storage the plan's work_dir is the bucket: a node holds only its jobs' copies
    if (
        config["storage"]["check_free_disk"]
        and SHARED_WORK_DIR
        and not workflow.dryrun
        and not _DISK_CHECKED
    ):
        try:
            check_disk(
                plan,
                paths.work_dir,
                paths.results_dir,
                config["storage"]["free_disk_limit_gb"],
            )
        except DiskSpaceError as exc:
            raise WorkflowError(str(exc)) from None
        _DISK_CHECKED.append(True)  # once per run, not once per job
    return plan


def manifest_of(period):
    """A period's manifest, once it is searched; read where the run keeps it."""
    return read_manifest(
        local_copy(checkpoints.search.get(period=period).output.manifest)
    )


def period_manifest(wildcards):
    return manifest_of(wildcards.period)


def period_scenes(wildcards):
    """Scene ids of a period, once the period is searched and the run is planned."""
    planned(wildcards.period)
    return scene_ids(period_manifest(wildcards))


def scene_records(wildcards):
    return [paths.scene_record(wildcards.period, s) for s in period_scenes(wildcards)]


def mask_stats(wildcards):
    return [paths.mask_stats(wildcards.period, s) for s in period_scenes(wildcards)]


def scene_fetch_spec(wildcards):
    """Only what decides the pixels, so unchanged scenes keep their params (and outputs)."""
    return fetch_spec(scene(manifest_of(wildcards.period), wildcards.scene))


def period_bounds(wildcards):
    return PERIODS[wildcards.period].bounds()


_TILE_SCENES = {}


def scenes_by_column(period):
    """For each column, the ids of the period's scenes that touch each of its tiles,
    and each scene's (first, last) tile column; computed once per manifest."""
    manifest = manifest_of(period)
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


def column_scene_facts(wildcards):
    """Each scene of the column: its acquisition, datetime and MGRS tile extent."""
    manifest = manifest_of(wildcards.period)
    wanted = set(column_scene_ids(column_tile_scenes(wildcards)))
    return {s["id"]: scene_facts(s) for s in manifest["scenes"] if s["id"] in wanted}


def column_inputs(wildcards):
    """The AOI and the scene rasters and masks of the period's scenes that touch the column."""
    planned(wildcards.period)
    period_manifest(wildcards)
    scenes = column_scene_ids(column_tile_scenes(wildcards))
    return {
        "aoi": paths.aoi(),
        # the params (tile_scenes, scene_facts) come from it: declared, so that a job
        # that runs where nothing is shared reads it from storage; ancient, so that a
        # new search reruns only the columns whose scenes changed
        "manifest": ancient(paths.manifest(wildcards.period)),
        "scenes": [paths.scene_raster(wildcards.period, s) for s in scenes],
        "masks": [paths.mask(wildcards.period, s) for s in scenes],
    }


def earlier_period_composited(wildcards):
    """Backpressure: the marker of the period storage.months_in_flight places earlier,
    whose columns must all be done (its temporary scene rasters gone) before this
    period's fetches start. Nothing when scene rasters are kept or there is no limit."""
    index = PERIOD_ORDER[wildcards.period]
    in_flight = config["storage"]["months_in_flight"]
    if (
        config["storage"]["keep_scene_rasters"]
        or in_flight is None
        or index < in_flight
    ):
        return []
    return ancient(paths.composited(sorted(PERIODS)[index - in_flight]))


def period_column_files(wildcards):
    """Every column composite of a period that has scenes (none for an empty period)."""
    if not period_manifest(wildcards)["scenes"]:
        return []
    return [paths.column(wildcards.period, column) for column in COLUMNS]


def metadata_inputs(wildcards):
    """Everything a period's metadata needs; the mosaic only when there are scenes."""
    inputs = {
        "manifest": paths.manifest(wildcards.period),
        "summary": paths.scene_summary(wildcards.period),
        "aoi": paths.aoi(),
        "records": scene_records(wildcards),
        "stats": mask_stats(wildcards),
    }
    if period_manifest(wildcards)["scenes"]:
        inputs |= period_products(wildcards.period)
        if cfg.method_settings(config, wildcards.period)["name"] != "percentile":
            inputs |= paths.date_products(
                wildcards.period, PERIODS[wildcards.period].filename_dates
            )
    return inputs


def upload_destination(wildcards):
    """Where the period's products end up, for the month's message."""
    if not config["upload"]["enabled"]:
        folder = stored(f"{paths.results_dir}/{wildcards.period}")
        if folder.is_storage:  # the results are objects: say where
            return folder.storage_object.query
        return str(Path(folder).resolve())
    return upload.destination(config["upload"], wildcards.period)


def upload_inputs(wildcards):
    """A period's products (when it has any), metadata and STAC Item."""
    inputs = metadata_inputs(wildcards)
    products = {k: inputs[k] for k in PRODUCT_FILES if k in inputs}
    return products | {
        "metadata": paths.metadata(wildcards.period),
        "item": paths.item(wildcards.period),
    }


def collection_href(wildcards):
    """The series' Collection as a month's Item links to it: the href between the two
    layout paths (a path in params would not be rewritten for object storage)."""
    return catalog.relative_href(paths.collection(), paths.item(wildcards.period))


def all_targets():
    # the model's weights first: missing ones stop the run before any search
    targets = list(RUN_WEIGHTS)
    targets += [paths.metadata(period) for period in PERIODS] + [paths.collection()]
    if config["upload"]["enabled"]:
        targets += [paths.upload_receipt(period) for period in PERIODS]
        targets.append(paths.collection_upload_receipt())
    return targets


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
