"""Storage planning: what a run will read, write and hold, from the search and HTTP HEADs;
the time plan (s2basemap.timeplan) is built on the same counts.

The estimates come from the source files' sizes (HEAD requests; Earth Search
items carry no file:size) scaled by how much of each scene the AOI covers, and
from the output grid. Factors were calibrated on the test world (synthetic
reflectance with noise, which compresses about like real Sentinel-2 data) and
err on the large side.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import stat
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

from pyproj import CRS
from shapely.geometry import box

from s2basemap.acquisitions import recorded_acquisition
from s2basemap.aoi import AOI, WGS84, reproject_geometry
from s2basemap.atomic import atomic_write_json, atomic_write_text
from s2basemap.disk import human
from s2basemap.failures import TRANSIENT, http_kind
from s2basemap.grid import OutputGrid
from s2basemap.layout import Layout
from s2basemap.signing import Signer
from s2basemap.timeplan import Machine, format_time_plan, period_time, time_plan

log = logging.getLogger(__name__)

HEADER_BYTES = 65_536  # per asset: GDAL reads the header and tile index first
BLOCK_OVERHEAD = 1.15  # whole blocks are read at the window's edges
SCENE_RASTER_FACTOR = 0.95  # fetched GeoTIFF (zstd) vs the source COGs' (deflate) bytes
MASK_BYTES_PER_PIXEL = 0.1  # uint8 deflate masks are mostly zeros
TILE_BYTES_PER_PIXEL = 5.0  # 5 uint16 bands at about half their raw size
PRODUCT_BYTES_PER_PIXEL = 6.0  # 4-band COG with overviews plus the count COG
# What every run keeps besides pixels: each job's log, benchmark and JSON record
# (about 1-3 kB each on the test world), and the compiled percentile kernel's cache.
BOOKKEEPING_BYTES_PER_JOB = 4_000
KERNEL_CACHE_BYTES = 250_000
GB = 1e9
EQUAL_AREA = CRS.from_epsg(6933)


class DiskSpaceError(RuntimeError):
    """The plan needs more disk than is free; the message has the numbers."""


class SourceUnreachable(OSError):
    """The imagery source did not answer the plan's size requests: nothing is fetched."""


def head_sizes(
    hrefs: list[str], timeout: float = 30, workers: int = 16, signer: Signer | None = None
) -> dict[str, int | None]:
    """Content-Length of each href by HTTP HEAD (None where the server did not say, or
    where the file is missing: its fetch will tell). SourceUnreachable when requests
    failed for network reasons after retries, as a plan on unknown sizes is no plan."""
    import requests
    from requests.adapters import HTTPAdapter
    from urllib3.util.retry import Retry

    session = requests.Session()
    retry = Retry(
        total=4,
        backoff_factor=0.5,
        status_forcelist=(429, 500, 502, 503, 504),
        allowed_methods=("HEAD",),
        raise_on_status=False,
    )
    session.mount("http://", HTTPAdapter(max_retries=retry, pool_maxsize=workers))
    session.mount("https://", HTTPAdapter(max_retries=retry, pool_maxsize=workers))
    unreachable = []

    signer = signer or Signer()

    def size(href: str) -> int | None:
        try:
            response = session.head(signer.sign(href), timeout=timeout, allow_redirects=True)
        except requests.RequestException as exc:
            unreachable.append(f"{href}: {type(exc).__name__}")
            return None
        if http_kind(response.status_code) == TRANSIENT and response.status_code >= 400:
            unreachable.append(f"{href}: HTTP {response.status_code}")
            return None
        if response.status_code >= 400:
            log.warning("HEAD %s: HTTP %s", href, response.status_code)
            return None
        length = response.headers.get("Content-Length")
        return int(length) if length and length.isdigit() else None

    with ThreadPoolExecutor(max_workers=workers) as pool:
        sizes = dict(zip(hrefs, pool.map(size, hrefs)))
    if unreachable:
        raise SourceUnreachable(
            f"the imagery source did not answer: {len(unreachable)} of {len(hrefs)} size "
            f"requests failed for network reasons (e.g. {unreachable[0]}); nothing was fetched. "
            "Run again once it answers."
        )
    return sizes


def scene_footprint(scene: dict, aoi: AOI):
    """(window area share, AOI area share, window pixels at 10 m) of one scene."""
    crs = CRS.from_user_input(scene["crs"]) if scene.get("crs") else None
    if crs is None or not crs.is_projected:
        crs = EQUAL_AREA  # areas only feed ratios and a pixel estimate
    footprint = reproject_geometry(box(*scene["bbox"]), WGS84, crs)
    overlap = aoi.in_crs(crs).intersection(footprint)
    if overlap.is_empty or footprint.area == 0:
        return 0.0, 0.0, 0
    window = box(*overlap.bounds)
    return window.area / footprint.area, overlap.area / footprint.area, int(window.area / 100)


def scene_window(scene: dict, aoi: AOI):
    """The scene's window over the AOI (its native CRS's bounding box of the two's
    overlap), in EQUAL_AREA; None where they do not overlap."""
    crs = CRS.from_user_input(scene["crs"]) if scene.get("crs") else None
    if crs is None or not crs.is_projected:
        crs = EQUAL_AREA
    overlap = aoi.in_crs(crs).intersection(reproject_geometry(box(*scene["bbox"]), WGS84, crs))
    if overlap.is_empty:
        return None
    return reproject_geometry(box(*overlap.bounds), crs, EQUAL_AREA)


def acquisition_pixels(manifest: dict, aoi: AOI) -> int:
    """10 m pixels of the period's windows with each acquisition's overlapping tiles
    counted once: the observations the composites fuse the scenes' pixels into
    (s2basemap.acquisitions)."""
    from shapely import union_all

    windows: dict[str, list] = {}
    for scene in manifest["scenes"]:
        window = scene_window(scene, aoi)
        if window is not None:
            windows.setdefault(recorded_acquisition(scene), []).append(window)
    return int(sum(union_all(parts).area for parts in windows.values()) / 100)


def size_scenes(manifest: dict, aoi: AOI, signer: Signer | None = None) -> dict:
    """Per scene: asset sizes and how much of the scene the AOI's window covers."""
    hrefs = [href for scene in manifest["scenes"] for href in scene["assets"].values()]
    sizes = head_sizes(hrefs, signer=signer)
    known = [s for s in sizes.values() if s]
    typical = sorted(known)[len(known) // 2] if known else 0
    scenes = {}
    for scene in manifest["scenes"]:
        window_share, aoi_share, pixels = scene_footprint(scene, aoi)
        asset_sizes = {band: sizes[href] for band, href in scene["assets"].items()}
        scenes[scene["id"]] = {
            "asset_bytes": asset_sizes,
            "unknown_sizes": sorted(b for b, s in asset_sizes.items() if s is None),
            "source_bytes": sum(s if s is not None else typical for s in asset_sizes.values()),
            "window_share": round(window_share, 6),
            "aoi_share": round(aoi_share, 6),
            "window_pixels": pixels,
        }
    return {
        "period": manifest["period"],
        "scenes": scenes,
        "acquisition_pixels": acquisition_pixels(manifest, aoi),
    }


def write_scene_sizes(manifest: dict, aoi: AOI, signer: Signer | None, path) -> None:
    """The period's `size_scenes`, written for the plan."""
    atomic_write_json(path, size_scenes(manifest, aoi, signer))


def scene_network_bytes(size: dict) -> float:
    """Bytes read over the network for one scene of `size_scenes`: its window's share of
    the source COGs in whole blocks, and each asset's header; nothing when no window."""
    if size["window_share"] <= 0:
        return 0.0
    return size["source_bytes"] * size["window_share"] * BLOCK_OVERHEAD + HEADER_BYTES * len(
        size["asset_bytes"]
    )


def estimate_period(
    sizes: dict,
    grid: OutputGrid,
    aoi: AOI,
    columns: dict[str, tuple[int, int]],
    column_tiles: dict[int, int],
) -> dict:
    """Bytes one period reads and writes, and the pixels and jobs its stages handle
    (for the time plan): one composite job per column of tiles (`column_tiles`:
    column -> its tile count).

    With each scene's (first, last) tile column, also the scene rasters and masks
    on disk at once when the month goes west to east (`sweep_bytes`), and the
    composites already written west of the sweep then (`sweep_tile_bytes`).
    """
    scenes = sizes["scenes"].values()
    aoi_pixels = aoi.in_crs(grid.crs).area / (grid.res_x * grid.res_y)
    network = sum(map(scene_network_bytes, scenes))
    scene_rasters = sum(s["source_bytes"] * s["aoi_share"] * SCENE_RASTER_FACTOR for s in scenes)
    masks = sum(s["window_pixels"] * MASK_BYTES_PER_PIXEL for s in scenes)
    has_scenes = bool(sizes["scenes"])
    tile_count = sum(column_tiles.values())
    composite_jobs = len(column_tiles) if has_scenes else 0
    tile_bytes = aoi_pixels * TILE_BYTES_PER_PIXEL if has_scenes else 0
    products = aoi_pixels * PRODUCT_BYTES_PER_PIXEL if has_scenes else 0
    estimate = {
        "scenes": len(sizes["scenes"]),
        "unknown_sizes": sum(len(s["unknown_sizes"]) for s in scenes),
        "network_bytes": int(network),
        "scene_raster_bytes": int(scene_rasters),
        "mask_bytes": int(masks),
        "tile_bytes": int(tile_bytes),
        "output_bytes": int(products),
        "window_pixels": sum(s["window_pixels"] for s in scenes),
        # the same windows, each acquisition's overlapping tiles once (sizes written
        # before acquisitions were fused lack it: every scene its own)
        "acquisition_pixels": min(
            sizes.get("acquisition_pixels", math.inf), sum(s["window_pixels"] for s in scenes)
        ),
        # fetch, mask and composite jobs, and the month's search, sizes, summary and products
        "bookkeeping_bytes": BOOKKEEPING_BYTES_PER_JOB
        * (2 * len(sizes["scenes"]) + composite_jobs + 5),
        "tiles": tile_count if has_scenes else 0,
        "composite_jobs": composite_jobs,
        # the longest composite job: the time plan's bound on the month's last columns
        "largest_column_tiles": max(column_tiles.values(), default=0) if has_scenes else 0,
        "output_pixels": tile_count * grid.tile_size**2 if has_scenes else 0,
    }
    held, column = sweep_front(sizes, columns)
    estimate["sweep_bytes"] = int(held)
    estimate["sweep_tile_bytes"] = int(
        tile_bytes * sum(n for c, n in column_tiles.items() if c < column) / tile_count
    )
    return estimate


# How far ahead of the composites the fetches run when the network bounds the sweep:
# two columns of a state's scenes. The timed replay of an Arkansas month at 1 Gbit/s
# (tests/benchmarks/scale.py --timed) held 103 GB, this model 105 GB (97 GB with one).
SWEEP_AHEAD_COLUMNS = 2


def sweep_front(
    sizes: dict, columns: dict[str, tuple[int, int]], ahead: int = SWEEP_AHEAD_COLUMNS
) -> tuple[float, int]:
    """The most scene-raster and mask bytes held at once when a month's work goes
    west to east over the output tile columns, and the column being composited
    then (those west of it are done). A scene is held from `ahead` columns before
    the first that needs it through the last; scenes that touch no tile are
    counted throughout."""
    held = {
        scene: size["source_bytes"] * size["aoi_share"] * SCENE_RASTER_FACTOR
        + size["window_pixels"] * MASK_BYTES_PER_PIXEL
        for scene, size in sizes["scenes"].items()
    }
    anywhere = sum(b for scene, b in held.items() if scene not in columns)
    spans = [
        (columns[scene][0] - ahead, columns[scene][1], b)
        for scene, b in held.items()
        if scene in columns
    ]
    at = {
        c: sum(b for first, last, b in spans if first <= c <= last)
        for c in sorted({first for first, _, _ in spans})
    }
    column = max(at, key=at.get, default=0)  # the westmost of equal peaks
    return anywhere + at.get(column, 0.0), column


def free_bytes(path, limit_gb: float | None) -> int:
    """Free disk at `path` (its nearest existing parent), capped by the configured limit."""
    free = shutil.disk_usage(_existing(path)).free
    return min(free, int(limit_gb * GB)) if limit_gb is not None else free


WORK_KEYS = ("scene_raster_bytes", "mask_bytes", "tile_bytes")  # under work_dir


def peak_bytes(
    periods: dict[str, dict],
    keep_intermediates: bool,
    months_in_flight: int | None = None,
    products: bool = True,
    products_kept: bool = True,
) -> tuple[int, int]:
    """(peak, final) bytes on disk for the whole run (`products`: results_dir's
    products included, else work_dir alone), periods in run order.
    `products_kept` false: a month's products are deleted once uploaded, after
    the next month's fetches may have started.

    Scene rasters, masks and tiles are temporary unless kept. Within a period the
    work goes west to east, so its scene rasters and masks peak at `sweep_bytes`
    where that was estimated, beside the composites written west of the sweep then
    (`sweep_tile_bytes`; else all of the month's); the tiles stay until its mosaic
    is assembled, and then its products are written. With `months_in_flight` = M,
    a period's fetches wait until the period M places earlier has all its tiles:
    at most M periods hold scene rasters, beside the tiles of the period before
    them (until assembled, see `_lingering`) and the products of all earlier ones.
    Without a limit every fetch may run first, and the worst case holds
    everything at once.
    """
    ordered = list(periods.values())

    def kept(p):
        work = sum(p[key] for key in WORK_KEYS) if keep_intermediates else 0
        return (
            work
            + p.get("bookkeeping_bytes", 0)
            + (p["output_bytes"] if products and products_kept else 0)
        )

    def written(p):  # products there until uploaded, when they are not kept
        return p["output_bytes"] if products and not products_kept else 0

    def swept(p):
        return min(p.get("sweep_bytes", math.inf), p["scene_raster_bytes"] + p["mask_bytes"])

    final = sum(kept(p) for p in ordered)
    if keep_intermediates:
        return final, final
    if months_in_flight is None:
        everything = sum(
            p["scene_raster_bytes"] + p["mask_bytes"] + p["tile_bytes"] for p in ordered
        )
        return everything + final, final
    peak = final
    for newest in range(len(ordered)):
        first = max(newest - months_in_flight + 1, 0)
        before = sum(kept(p) for p in ordered[:first])
        lingering = _lingering(ordered[first - 1], ordered[first], written) if first > 0 else 0
        in_flight = ordered[first : newest + 1]
        # the newest month at its sweep's peak, beside the whole of older ones in flight
        sweeping = (
            sum(swept(p) + p["tile_bytes"] for p in in_flight[:-1])
            + swept(in_flight[-1])
            + in_flight[-1].get("sweep_tile_bytes", in_flight[-1]["tile_bytes"])
            + lingering
            + before
        )
        ending = (
            ordered[newest]["tile_bytes"]
            + kept(ordered[newest])
            + written(ordered[newest])
            + sum(kept(p) for p in ordered[:newest])
        )
        peak = max(peak, sweeping, ending)
    return peak, final


def _lingering(previous: dict, current: dict, written) -> int:
    """The month before's composites (and products not kept) beside a month's sweep
    at its peak: its mosaic is assembled (and uploaded) while this month's fetches
    start, so they are gone by then when the time plan says the sweep's peak comes
    later than that (`sweep_peak_seconds` after the month's start, `released_seconds`
    after the month before's end); counted when either is not known."""
    if current.get("sweep_peak_seconds", 0) > previous.get("released_seconds", math.inf):
        return 0
    return previous["tile_bytes"] + written(previous)


def timed_sweeps(
    periods: dict[str, dict], machine: Machine, uses_ocm: bool, products_kept: bool
) -> None:
    """When each month's sweep peaks (its share of the month's sweep: the share of
    its tiles west of the peak), and when its composites and products are gone
    after its tiles are all done, which is when the next month's fetches may start
    (the outputs stage, and the upload when products are not kept)."""
    for p in periods.values():
        time = period_time(p, machine, uses_ocm)
        # when the GPU bounds the sweep, the fetches are held back only by the cores the
        # masks take first: timed replays at 10 Gbit/s held 125-153 GB where the band
        # is 105 and the whole month 184. No model says how far ahead they get, so the
        # plan counts the whole month, an upper bound. On the cores, masks and
        # composites come first and the band holds.
        p["fetches_outrun_sweep"] = (
            time["sweep_bound_by"] == "GPU"
            and time["stages"]["fetch"]["seconds"] < time["sweep_seconds"]
        )
        if p["fetches_outrun_sweep"]:
            p["sweep_bytes"] = p["scene_raster_bytes"] + p["mask_bytes"]
        share = p["sweep_tile_bytes"] / p["tile_bytes"] if p["tile_bytes"] else 0.0
        p["sweep_peak_seconds"] = round(share * time["sweep_seconds"], 1)
        upload = 0.0 if products_kept else p["output_bytes"] * 8 / (machine.network_gbps * 1e9)
        p["released_seconds"] = round(time["stages"]["outputs"]["seconds"] + upload, 1)


def same_filesystem(a, b) -> bool:
    """Whether two paths (or their nearest existing parents) share a disk."""
    return _existing(a).stat().st_dev == _existing(b).stat().st_dev


def _existing(path) -> Path:
    path = Path(path).resolve()
    while not path.exists():
        path = path.parent
    return path


def build_plan(
    periods: dict[str, dict],
    keep_intermediates: bool,
    work_dir,
    results_dir,
    limit_gb: float | None,
    months_in_flight: int | None = None,
    products_kept: bool = True,
) -> dict:
    """Per period and in total, with the run's peak and final disk, in all and under
    work_dir alone (results_dir may be another disk)."""
    for p in periods.values():
        p["peak_bytes"] = peak_bytes(
            {"one": p}, keep_intermediates, 1, products_kept=products_kept
        )[0]
        p["work_peak_bytes"] = peak_bytes({"one": p}, keep_intermediates, 1, products=False)[0]
    total = {
        key: sum(p[key] for p in periods.values())
        for key in (
            "scenes",
            "unknown_sizes",
            "network_bytes",
            "scene_raster_bytes",
            "mask_bytes",
            "tile_bytes",
            "output_bytes",
        )
    }
    cache = KERNEL_CACHE_BYTES if total["scenes"] else 0
    peak, final = (
        b + cache
        for b in peak_bytes(
            periods, keep_intermediates, months_in_flight, products_kept=products_kept
        )
    )
    work_peak, work_final = (
        b + cache for b in peak_bytes(periods, keep_intermediates, months_in_flight, products=False)
    )
    return {
        "periods": periods,
        "total": total
        | {
            "peak_bytes": peak,
            "final_bytes": final,
            "work_peak_bytes": work_peak,
            "work_final_bytes": work_final,
        },
        "keep_scene_rasters": keep_intermediates,
        "products_kept": products_kept,
        "months_in_flight": None if keep_intermediates else months_in_flight,
        "same_filesystem": same_filesystem(work_dir, results_dir),
        "free_bytes": {
            "work_dir": free_bytes(work_dir, limit_gb),
            "results_dir": free_bytes(results_dir, limit_gb),
        },
        "free_disk_limit_gb": limit_gb,
    }


def check_disk(plan: dict, work_dir, results_dir, limit_gb: float | None) -> None:
    """Refuse when what the plan still has to write exceeds the free disk now: on one
    filesystem, the whole peak; on two, work_dir's peak and results_dir's products each.

    Files already under work_dir and results_dir count as written, so a resumed
    run is not refused for space its own earlier part occupies.
    """
    total = plan["total"]
    if plan.get("same_filesystem", True):
        needs = [("work_dir", work_dir, total["peak_bytes"], [work_dir, results_dir])]
    else:
        needs = [
            ("work_dir", work_dir, total["work_peak_bytes"], [work_dir]),
            ("results_dir", results_dir, total["output_bytes"], [results_dir]),
        ]
    for name, path, peak, counted in needs:
        written = sum(bytes_under(p) for p in counted)
        needed, free = max(peak - written, 0), free_bytes(path, limit_gb)
        if needed > free:
            raise DiskSpaceError(_refusal(plan, name, path, peak, written, needed, free, limit_gb))


def _refusal(plan, name, path, peak, written, needed, free, limit_gb) -> str:
    per_period = ", ".join(
        f"{label}: {human(p['peak_bytes'])}" for label, p in plan["periods"].items()
    )
    capped = " (capped by storage.free_disk_limit_gb)" if limit_gb is not None else ""
    return (
        f"not enough free disk: the plan needs {human(peak)} at peak in {name} ({per_period}); "
        f"{human(written)} of it is already written, so {human(needed)} more must fit in "
        f"{name} '{path}', but only {human(free)} are free there{capped}. Free some space, "
        f"point {name} at a larger disk, or set storage.check_free_disk: false to run anyway."
    )


def bytes_under(path) -> int:
    """Bytes of the regular files under `path` (0 if it does not exist).

    Jobs write while this counts (the disk check runs during real runs): a file
    renamed or deleted between listing and stat is skipped, and os.walk passes
    over directories that vanish.
    """
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            try:
                info = os.lstat(os.path.join(root, name))
            except FileNotFoundError:
                continue
            if stat.S_ISREG(info.st_mode):
                total += info.st_size
    return total


def products_held(plan: dict) -> str:
    if plan.get("products_kept", True):
        return human(plan["total"]["output_bytes"])
    largest = max((p["output_bytes"] for p in plan["periods"].values()), default=0)
    return f"at most {human(largest)} (upload.keep_local: false deletes each month's once uploaded)"


def format_plan(plan: dict) -> str:
    rows = [("period", "scenes", "network", "scene rasters", "masks", "tiles", "outputs", "peak")]
    for label, p in list(plan["periods"].items()) + [("total", plan["total"])]:
        rows.append(
            (
                label,
                str(p["scenes"]),
                human(p["network_bytes"]),
                human(p["scene_raster_bytes"]),
                human(p["mask_bytes"]),
                human(p["tile_bytes"]),
                human(p["output_bytes"]),
                human(p["peak_bytes"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    total = plan["total"]
    intermediates = (
        "kept" if plan["keep_scene_rasters"] else "deleted once their month's tiles are used"
    )
    if plan.get("months_in_flight"):
        intermediates += f"; at most {plan['months_in_flight']} month(s) of them at once"
    lines += [
        (
            f"final disk after the run: {human(total['final_bytes'])} (scene rasters, masks and tiles "
            f"{intermediates})"
        ),
        (
            f"of the peak, work_dir holds at most {human(total['work_peak_bytes'])}; the products "
            f"in results_dir add {products_held(plan)}"
        ),
        (
            f"free disk: work_dir {human(plan['free_bytes']['work_dir'])}, "
            f"results_dir {human(plan['free_bytes']['results_dir'])}"
        ),
    ]
    outrun = [label for label, p in plan["periods"].items() if p.get("fetches_outrun_sweep")]
    if outrun:
        lines.append(
            f"the network outpaces the GPU ({', '.join(outrun)}): the peak counts those months' "
            f"scene rasters all at once, an upper bound"
        )
    if plan["total"]["unknown_sizes"]:
        lines.append(
            f"{plan['total']['unknown_sizes']} asset sizes unknown (HEAD failed): "
            f"estimated from the typical asset"
        )
    return "\n".join(lines)


def load_plan(path) -> dict:
    """The plan at `path`, read again only when it was rewritten (every per-scene
    job of a run asks for it while Snakemake builds the DAG)."""
    stat = Path(path).stat()
    return _load_plan_cached(str(Path(path).resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=4)
def _load_plan_cached(path: str, mtime_ns: int, size: int) -> dict:
    return json.loads(Path(path).read_text())


def plan_run(
    size_paths,
    manifest_paths,
    grid: OutputGrid,
    aoi: AOI,
    storage: dict,
    machine: Machine,
    uses_ocm: bool,
    layout: Layout,
    plan_path,
    report_path,
    products_kept: bool = True,
) -> str:
    """Write the plan (JSON) and its report (disk, then time); return the report."""
    from s2basemap.grid import scene_columns
    from s2basemap.manifest import read_manifest, scenes_by_tile

    tiles = grid.tile_ids(aoi.in_crs(grid.crs))
    footprints = {tile: grid.tile_footprint_4326(tile) for tile in tiles}
    column_tiles = {int(c): len(ts) for c, ts in grid.columns(tiles).items()}
    manifests = {m["period"]: m for m in map(read_manifest, manifest_paths)}
    periods = {}
    for path in size_paths:
        sizes = json.loads(Path(path).read_text())
        columns = scene_columns(scenes_by_tile(manifests[sizes["period"]], footprints))
        periods[sizes["period"]] = estimate_period(sizes, grid, aoi, columns, column_tiles)
    timed_sweeps(periods, machine, uses_ocm, products_kept)
    plan = build_plan(
        dict(sorted(periods.items())),
        storage["keep_scene_rasters"],
        layout.work_dir,
        layout.results_dir,
        storage["free_disk_limit_gb"],
        storage["months_in_flight"],
        products_kept,
    )
    plan["time"] = time_plan(plan["periods"], machine, uses_ocm)
    report = format_plan(plan) + "\n\n" + format_time_plan(plan["time"])
    atomic_write_json(plan_path, plan)
    atomic_write_text(report_path, report + "\n")
    log.info("storage plan:\n%s", report)
    return report
