"""Composite output tiles: warp every overlapping scene and its mask onto the
tile grid, then take the per-pixel percentile of the valid observations.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

import numpy as np
import rasterio
from affine import Affine
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform
from rasterio.windows import Window

from s2basemap.acquisitions import centre_in
from s2basemap.aoi import AOI
from s2basemap.atomic import atomic_path
from s2basemap.fusion import Acquisition, squared_distances, winners
from s2basemap.fusion import group as group_acquisitions
from s2basemap.grid import OutputGrid
from s2basemap.masktags import OK, OUTSIDE, mask_usability
from s2basemap.percentile import percentile_composite, resolve_backend
from s2basemap.periods import DAY_NODATA, Period
from s2basemap.warp import (
    EXACT,
    IndexMap,
    Placement,
    RasterGrid,
    TileGrid,
    gather,
    gather_xp,
    group_by_lattice,
    index_map,
)

log = logging.getLogger(__name__)

# Scene files hold blue, green, red, nir, scl; products are red, green, blue, nir.
SCENE_TO_PRODUCT = [2, 1, 0, 3]
PRODUCT_BANDS = ("Red", "Green", "Blue", "NIR")


@dataclass(frozen=True)
class SceneInput:
    id: str
    tif: str
    mask: str
    acquired: str = ""  # ISO datetime: pick and medoid stack scenes in time order
    day: int = DAY_NODATA  # days since the period's start: the date band's value
    acquisition: str = ""  # the datatake it belongs to; "" for one of its own
    centre: tuple[float, float] | None = None  # its MGRS tile's centre in the output CRS


@dataclass(frozen=True)
class Method:
    """How a pixel's valid observations become one value (composite.method)."""

    name: str = "percentile"
    percentile: float = 25
    pick_index: str = "brightness"

    @property
    def dated(self) -> bool:
        """Whether every pixel comes whole from one observation, with its date."""
        return self.name != "percentile"

    def describe(self) -> str:
        if self.name == "pick":
            return f"pick by {self.pick_index} at the {self.percentile:g}th percentile rank"
        if self.name == "medoid":
            return "medoid"
        return f"percentile {self.percentile:g}"


# The column file's bands: the product's four, the count, and for dated methods
# the day + 1 (0, the file's nodata, where no observation is valid)
COLUMN_BANDS = (*PRODUCT_BANDS, "count", "day + 1")


def usable_scenes(scene_tifs, mask_tifs) -> list[SceneInput]:
    """The tile's scenes that were fetched, in input order, per the tags of each mask."""
    usable = []
    for tif, mask in zip(scene_tifs, mask_tifs, strict=True):
        scene_id, status = mask_usability(mask)
        if status == OK:
            usable.append(SceneInput(scene_id, str(tif), str(mask)))
    return usable


def tile_grid(grid: OutputGrid, tile_id: str) -> TileGrid:
    _, _, height, width = grid.tile_window(tile_id)
    return TileGrid(grid.crs, grid.tile_transform(tile_id), height, width)


def kernel_scales(source: RasterGrid, tile: TileGrid) -> tuple[float, float]:
    """GDAL's XSCALE and YSCALE for warping `source` onto `tile`: tile pixels per source
    pixel along the tile's x and y axes, at the tile's centre.

    Left to itself, GDAL estimates them for every chunk it warps from the chunk's
    source bounding box, which a rotation between the grids (another UTM zone, Albers)
    stretches by the chunk's other side: a WarpedVRT block of 512 x 128 px in EPSG:5070
    from UTM 16 near -90 deg gets a y scale of about 0.74, and bilinear and cubic widen
    their kernels by its inverse (GDAL does below 0.95). Values then depended on how a
    tile was chunked: a 256 px tile of tests/test_warp.py's scenes read through the
    WarpedVRT and warped by reproject in one piece differed on most pixels, by up to
    568 DN. Per axis, because Albers is not conformal.
    """
    col, row = tile.width / 2, tile.height / 2
    xs, ys = zip(*(tile.transform * p for p in ((col, row), (col + 1, row), (col, row + 1))))
    cols, rows = zip(
        *(~source.transform * p for p in zip(*transform(tile.crs, source.crs, xs, ys)))
    )
    x_step = math.hypot(cols[1] - cols[0], rows[1] - rows[0])
    y_step = math.hypot(cols[2] - cols[0], rows[2] - rows[0])
    return 1 / x_step, 1 / y_step


def warp(
    path: str, grid: OutputGrid, tile_id: str, resampling: Resampling, nodata: int, indexes
) -> np.ndarray:
    """Read `path` onto the tile grid through GDAL's warper, transforming every pixel exactly,
    with the kernel's scales fixed for the whole tile (`kernel_scales`).

    Used for resampling other than nearest; nearest goes through index maps,
    which pick the same pixels at a fraction of the cost.
    """
    tile = tile_grid(grid, tile_id)
    with rasterio.open(path) as src:
        xscale, yscale = kernel_scales(
            RasterGrid(src.crs, src.transform, src.height, src.width), tile
        )
        with WarpedVRT(
            src,
            crs=tile.crs,
            transform=tile.transform,
            width=tile.width,
            height=tile.height,
            resampling=resampling,
            nodata=nodata,
            src_nodata=src.nodata if src.nodata is not None else None,
            warp_mem_limit=256,
            tolerance=EXACT,
            XSCALE=repr(xscale),
            YSCALE=repr(yscale),
        ) as vrt:
            return vrt.read(indexes)


@dataclass
class Picked:
    """A raster's window under the tile and where it sits on its lattice's index map."""

    image: np.ndarray | None  # (bands, h, w); None when the tile picks nothing from it
    imap: IndexMap | None
    row_off: int = 0
    col_off: int = 0

    def onto_tile(self, out, fill: int, device: Device | None):
        """Gather onto the tile into `out`, on the host or the device; `fill` where nothing is picked."""
        if self.image is None:
            out[...] = fill
            return out
        if device is None:
            return gather(
                self.image, self.imap.rows, self.imap.cols, self.row_off, self.col_off, fill, out
            )
        rows, cols = device.index_map(self.imap)
        return gather_xp(
            device.xp.asarray(self.image), rows, cols, self.row_off, self.col_off, fill, out
        )


@dataclass
class Warped:
    """Pixels already on the tile grid (GDAL's warper, for resampling other than nearest)."""

    image: np.ndarray

    def onto_tile(self, out, fill: int, device: Device | None):
        out[...] = self.image if device is None else device.xp.asarray(self.image)
        return out


class Device:
    """Where a stack is gathered off the host: an array module (cupy) and its copies of the
    index maps. The gather there is `gather_xp`, the same code that the tests run on numpy."""

    def __init__(self, xp):
        self.xp = xp
        self.maps: dict[int, tuple] = {}

    def index_map(self, imap: IndexMap):
        if id(imap) not in self.maps:  # each map goes up once
            self.maps[id(imap)] = (self.xp.asarray(imap.rows), self.xp.asarray(imap.cols))
        return self.maps[id(imap)]


class TileReader:
    """Reads rasters onto one tile: one index map per source lattice, shared by every raster on it."""

    def __init__(self, paths: list[str], bands: int, tile: TileGrid, pool: ThreadPoolExecutor):
        """Rasters read through `bands` of their bands each. The index maps are computed in
        `pool` (GDAL's warper releases the GIL), `ready()` waits for them: a tile's scene
        and mask maps, each mostly one exact warp of the tile on one core, run side by side.
        """
        grids = [RasterGrid.of(path) for path in paths]
        self.bands = bands
        self.located: dict[str, tuple[IndexMap, Placement]] = {}
        self._pending = []
        for all_bands in (True, False):  # see index_map: the two are mapped apart
            chosen = [i for i, grid in enumerate(grids) if (grid.count == bands) == all_bands]
            for group in group_by_lattice([grids[i] for i in chosen]):
                future = pool.submit(index_map, *group, tile, all_bands)
                self._pending.append(([paths[chosen[m.index]] for m in group[1]], group[1], future))

    def ready(self) -> TileReader:
        for member_paths, members, future in self._pending:
            imap = future.result()
            for path, member in zip(member_paths, members, strict=True):
                self.located[path] = (imap, member)
        if self._pending:
            log.info("%d rasters on %d source grid(s)", len(self.located), len(self._pending))
        self._pending = []
        return self

    def read(self, path: str) -> Picked:
        imap, placement = self.located[path]
        window = imap.window_of(placement)
        if window is None:
            return Picked(None, None)
        with rasterio.open(path) as src:
            image = src.read(list(range(1, self.bands + 1)), window=window)
        return Picked(
            image, imap, placement.row_off + window.row_off, placement.col_off + window.col_off
        )


@dataclass
class Stack:
    """A tile's observations, one per acquisition and pixel (`s2basemap.acquisitions`)."""

    values: object  # (A, 4, H, W) uint16 reflectance in scene band order
    valid: object  # (A, H, W) bool
    acquisitions: list[Acquisition]
    scene_observations: int  # valid pixels summed over the scenes, as if each were its own


def fused_stack(
    scenes: list[SceneInput],
    grid: OutputGrid,
    tile_id: str,
    aoi: AOI,
    resampling: Resampling,
    threads: int = 1,
    device: Device | None = None,
) -> Stack:
    """The tile's stack, one layer per acquisition, in the order of `scenes`' first members.

    Masks first: they decide which scene of an acquisition supplies each pixel, and a
    scene that supplies none is never read. Windows are read and decompressed in
    `threads` threads. With a `device`, the stack is gathered there and stays there.
    """
    xp = np if device is None else device.xp
    tile = tile_grid(grid, tile_id)
    acquisitions = group_acquisitions(scenes)
    shape = (tile.height, tile.width)
    inside = xp.asarray(
        geometry_mask(
            [aoi.in_crs(grid.crs)], out_shape=shape, transform=tile.transform, invert=True
        )
    )
    values = xp.zeros((len(acquisitions), 4, *shape), dtype=np.uint16)
    masks = xp.full((len(acquisitions), *shape), OUTSIDE, dtype=np.uint8)  # fused, per acquisition

    def read_pixels(i: int):
        if resampling == Resampling.nearest:
            return scene_reader.read(scenes[i].tif)
        return Warped(warp(scenes[i].tif, grid, tile_id, resampling, 0, [1, 2, 3, 4]))

    def place(pixels, a: int, claim) -> None:
        if claim is None:  # the acquisition's only scene
            pixels.onto_tile(values[a], 0, device)
        else:
            own = pixels.onto_tile(xp.empty((4, *shape), dtype=np.uint16), 0, device)
            xp.copyto(values[a], own, where=claim[None])  # claims are disjoint: no race

    def load(job):
        pixels = read_pixels(job[0])
        if device is not None:  # one thread drives the device
            return pixels, job
        place(pixels, *job[1:])  # the gather releases the GIL: it runs in this reader thread
        return None

    with ThreadPoolExecutor(max(1, threads)) as pool:
        scene_reader = TileReader([s.tif for s in scenes], 4, tile, pool)
        mask_reader = TileReader([s.mask for s in scenes], 1, tile, pool)
        scene_reader.ready(), mask_reader.ready()
        scene_masks = list(_masks_on_tile(pool, mask_reader, scenes, shape, device))
        observed = sum(int(((m == 0) & inside).sum()) for m in scene_masks)
        jobs = []
        for a, acquisition in enumerate(acquisitions):
            members = [scene_masks[i] for i in acquisition.scenes]
            claims = winners(xp.stack(members), _distances(scenes, acquisition, tile, xp), xp)
            single = len(members) == 1
            for i, member, claim in zip(acquisition.scenes, members, claims, strict=True):
                masks[a] = xp.where(claim, member, masks[a])
                if bool(claim.any()):  # a scene a nearer tile always supplies is never read
                    jobs.append((i, a, None if single else claim))
        del scene_masks
        for loaded in pool.map(load, jobs):
            if loaded is not None:
                place(loaded[0], *loaded[1][1:])
    valid = (masks == 0) & (values > 0).all(axis=1) & inside[None]
    for a, acquisition in enumerate(acquisitions):
        log.info(
            "%s (%d scenes): %d valid pixels in tile %s",
            acquisition.id,
            len(acquisition.scenes),
            int(valid[a].sum()),
            tile_id,
        )
    return Stack(values, valid, acquisitions, observed)


def _masks_on_tile(pool, reader: TileReader, scenes, shape, device):
    """Each scene's mask on the tile (OUTSIDE where it has no pixels), in scene order:
    gathered in the reader threads on the host, on this thread for a device."""

    def load(scene):
        picked = reader.read(scene.mask)
        if device is not None:
            return picked
        return picked.onto_tile(np.empty((1, *shape), dtype=np.uint8), OUTSIDE, None)[0]

    for loaded in pool.map(load, scenes):
        if device is None:
            yield loaded
        else:
            out = device.xp.empty((1, *shape), dtype=np.uint8)
            yield loaded.onto_tile(out, OUTSIDE, device)[0]


def _distances(scenes, acquisition: Acquisition, tile: TileGrid, xp):
    """(k, H, W) squared distances from the tile's pixel centres to the tile centre of
    each of the acquisition's k scenes; None for an acquisition of one scene."""
    if len(acquisition.scenes) == 1:
        return None
    centres = [scenes[i].centre for i in acquisition.scenes]
    if any(c is None for c in centres):
        names = ", ".join(scenes[i].id for i in acquisition.scenes)
        raise ValueError(f"acquisition {acquisition.id}: a tile centre is missing ({names})")
    return xp.stack(
        [squared_distances(tile.transform, tile.height, tile.width, c, xp) for c in centres]
    )


def stack_tile(
    scenes: list[SceneInput],
    grid: OutputGrid,
    tile_id: str,
    aoi: AOI,
    resampling: Resampling,
    threads: int = 1,
    device: Device | None = None,
):
    """`fused_stack`'s (A, 4, H, W) values and (A, H, W) validity."""
    stack = fused_stack(scenes, grid, tile_id, aoi, resampling, threads, device)
    return stack.values, stack.valid


def _array_module(backend: str):
    """(backend used, cupy or None for the host)."""
    used = resolve_backend(backend)
    if used != "gpu":
        return used, None
    import cupy

    return used, cupy


def _composite(
    scenes: list[SceneInput],
    grid: OutputGrid,
    tile_id: str,
    aoi: AOI,
    method: Method,
    resampling: str,
    xp,
    threads: int,
):
    """The tile's (4, H, W) composite in product band order, its (H, W) count of valid
    acquisitions, for dated methods its (H, W) day + 1 (0 where none), else None, and
    its fused `Stack` (the arrays dropped)."""
    # a Device per tile: its index-map cache is keyed by the maps' ids, which later
    # tiles' maps may reuse once these are freed
    device = None if xp is None else Device(xp)
    stack = fused_stack(scenes, grid, tile_id, aoi, Resampling[resampling], threads, device)
    values, valid = stack.values, stack.valid
    observations = int(valid.sum())
    stack = replace(stack, values=None, valid=observations)
    if not method.dated:
        composite, count = percentile_composite(values, valid, method.percentile)
        return composite[SCENE_TO_PRODUCT], count, None, stack
    from s2basemap.methods import method_composite

    composite, count, chosen = method_composite(
        method.name, values[:, SCENE_TO_PRODUCT], valid, method.percentile, method.pick_index
    )
    day_plus_one = np.array([0] + [a.day + 1 for a in stack.acquisitions], dtype=np.uint16)
    return composite, count, day_plus_one[chosen.astype(np.int64) + 1], stack


def _tile_profile(
    grid: OutputGrid, row_off: int, col_off: int, height: int, width: int, count: int = 5
) -> dict:
    return {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": count,
        "width": width,
        "height": height,
        "crs": grid.crs,
        "transform": grid.transform * Affine.translation(col_off, row_off),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        # scratch, read once by the products: cheap to write (GDAL's default level 9 was
        # about a second per tile, on one core), and band by band, so the count COG
        # decodes only its band
        "compress": "zstd",
        "zstd_level": 1,
        "interleave": "band",
    }


def _describe_bands(dst) -> None:
    for i in range(dst.count):
        dst.set_band_description(i + 1, COLUMN_BANDS[i])


def _write(dst, composite, count, days, window: Window | None = None) -> None:
    dst.write(composite, [1, 2, 3, 4], window=window)
    dst.write(count, 5, window=window)
    if days is not None:
        dst.write(days, 6, window=window)


def _in_time_order(scenes: list[SceneInput], method: Method) -> list[SceneInput]:
    """Dated methods break ties by the earlier acquisition, then its id: the kernels take
    the lower stack index, and the stack's acquisitions come in their first scenes' order."""
    return (
        sorted(scenes, key=lambda s: (s.acquired, s.acquisition or s.id, s.id))
        if method.dated
        else scenes
    )


def _tile_stats(
    tile_id: str, scenes: list[SceneInput], method: Method, used: str, count, stack: Stack
) -> dict:
    covered = int((count > 0).sum())
    log.info(
        "tile %s: %d scenes in %d acquisitions, %s on %s, %d of %d pixels covered, "
        "%d observation-pixels (%d unfused)",
        tile_id,
        len(scenes),
        len(stack.acquisitions),
        method.describe(),
        used,
        covered,
        count.size,
        stack.valid,
        stack.scene_observations,
    )
    return {
        "tile": tile_id,
        "scenes": len(scenes),
        "acquisitions": len(stack.acquisitions),
        "observation_pixels": stack.valid,
        "scene_observation_pixels": stack.scene_observations,
        "backend": used,
        "covered_pixels": covered,
    }


def composite_tile(
    scenes: list[SceneInput],
    grid: OutputGrid,
    tile_id: str,
    aoi: AOI,
    percentile: float,
    resampling: str,
    out_path,
    backend: str = "auto",
    threads: int = 1,
    method: Method | None = None,
) -> dict:
    """Write the tile's composite (Red, Green, Blue, NIR, count, and for dated methods
    day + 1) and return its statistics."""
    method = method or Method("percentile", percentile)
    used, xp = _array_module(backend)
    scenes = _in_time_order(scenes, method)
    composite, count, days, stack = _composite(
        scenes, grid, tile_id, aoi, method, resampling, xp, threads
    )
    bands = 6 if method.dated else 5
    with (
        atomic_path(out_path) as tmp,
        rasterio.open(tmp, "w", **_tile_profile(grid, *grid.tile_window(tile_id), bands)) as dst,
    ):
        _write(dst, composite, count, days)
        _describe_bands(dst)
    return _tile_stats(tile_id, scenes, method, used, count, stack)


def composite_column(
    scenes: list[SceneInput],
    tile_scenes: dict[str, list[str]],
    grid: OutputGrid,
    aoi: AOI,
    percentile: float,
    resampling: str,
    out_path,
    backend: str = "auto",
    threads: int = 1,
    method: Method | None = None,
) -> list[dict]:
    """Write a column of tiles as one strip, each tile composited from its own scenes
    (`tile_scenes`: tile id -> scene ids) exactly as `composite_tile` would; return
    the tiles' statistics. `method` defaults to the per-band `percentile`.

    A tile at a time bounds the memory; one job per column instead of per tile
    keeps the DAG of a state-sized year small (Snakemake's DAG build grows with
    the jobs and their input files, and a scene touches ~30 tiles but ~6 columns).
    """
    method = method or Method("percentile", percentile)
    used, xp = _array_module(backend)
    by_id = {scene.id: scene for scene in scenes}
    row_off, col_off, height, width = grid.column_window(list(tile_scenes))
    bands = 6 if method.dated else 5
    stats = []
    # rows between the column's tiles that are outside the AOI are never written:
    # sparse, they read as nodata like the tiles missing from the mosaic's VRT
    with (
        atomic_path(out_path) as tmp,
        rasterio.open(
            tmp, "w", **_tile_profile(grid, row_off, col_off, height, width, bands), sparse_ok=True
        ) as dst,
    ):
        for tile_id in sorted(tile_scenes):
            tile_inputs = [by_id[s] for s in tile_scenes[tile_id] if s in by_id]
            tile_inputs = _in_time_order(tile_inputs, method)
            composite, count, days, stack = _composite(
                tile_inputs, grid, tile_id, aoi, method, resampling, xp, threads
            )
            tile_row, _, tile_height, _ = grid.tile_window(tile_id)
            _write(dst, composite, count, days, Window(0, tile_row - row_off, width, tile_height))
            stats.append(_tile_stats(tile_id, tile_inputs, method, used, count, stack))
        _describe_bands(dst)
    return stats


def composite_column_job(
    tile_scenes: dict[str, list[str]],
    scene_tifs,
    mask_tifs,
    grid: OutputGrid,
    aoi: AOI,
    method: Method,
    resampling: str,
    out_path,
    backend: str,
    threads: int,
    period: Period,
    scene_facts: dict[str, dict],
) -> list[dict]:
    """A composite job: the column of its usable scenes, the CPU kernel on `threads` threads.

    The inputs are in `column_scene_ids(tile_scenes)` order, one scene raster and mask
    per scene; `scene_facts` gives each scene's `acquisitions.scene_facts`.
    """
    import numba

    numba.set_num_threads(max(1, min(threads, numba.config.NUMBA_NUM_THREADS)))
    scenes = [
        with_facts(s, scene_facts[s.id], period, grid.crs)
        for s in usable_scenes(scene_tifs, mask_tifs)
    ]
    return composite_column(
        scenes,
        tile_scenes,
        grid,
        aoi,
        method.percentile,
        resampling,
        out_path,
        backend,
        threads,
        method,
    )


def with_facts(scene: SceneInput, facts: dict, period: Period, crs) -> SceneInput:
    """The scene with its acquisition, the time and day it was acquired, and its tile's
    centre in the output CRS."""
    return replace(
        scene,
        acquired=facts["datetime"],
        day=period.day_of(facts["datetime"]),
        acquisition=facts["acquisition"],
        centre=centre_in(facts["extent"], crs),
    )
