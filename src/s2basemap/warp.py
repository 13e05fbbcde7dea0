"""Nearest-neighbour warping through index maps: GDAL's exact pick, computed once per grid.

Sentinel-2 scenes of one UTM zone lie on one 10 m lattice: their origins differ
by whole pixels. The source pixel that GDAL's exact nearest-neighbour warp picks
for an output pixel is therefore the same for every scene on that lattice, up to
the scene's whole-pixel offset. So the lattice is warped once, as a raster of its
own pixel indices, through the same GDAL warp the scenes used to go through one
by one; each scene then costs one windowed read and one gather.

Whether two rasters share a lattice is decided from their CRS and transform,
never assumed from a tile name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT
from rasterio.warp import transform_bounds
from rasterio.windows import Window

# GDAL approximates the reprojection to 1/8 pixel by default, which moves
# nearest-neighbour picks; this tolerance makes it transform (almost) every
# pixel exactly. (rasterio 1.4 fails on tolerance=0.)
EXACT = 1e-6
OUTSIDE = -1  # index map value where no source pixel is picked
PHASE_TOLERANCE = 1e-6  # in pixels: origins closer to a whole-pixel offset are on one lattice
FOOTPRINT_PAD = 16  # lattice pixels added around the tile's footprint (edge densification slack)


@dataclass(frozen=True)
class RasterGrid:
    """Where a raster's pixels are: its CRS, transform and size (and its band count)."""

    crs: CRS
    transform: Affine
    height: int
    width: int
    count: int = 1

    @classmethod
    def of(cls, path) -> RasterGrid:
        with rasterio.open(path) as src:
            return cls(src.crs, src.transform, src.height, src.width, src.count)


@dataclass(frozen=True)
class Lattice:
    """A grid of pixels without edges: a CRS and the transform of one pixel taken as origin."""

    crs: CRS
    transform: Affine

    def offset_of(self, grid: RasterGrid) -> tuple[int, int] | None:
        """(row, col) of `grid`'s first pixel on the lattice, or None if not on it."""
        a, b, _, d, e, _ = self.transform[:6]
        if grid.crs != self.crs or tuple(grid.transform[:6][i] for i in (0, 1, 3, 4)) != (
            a,
            b,
            d,
            e,
        ):
            return None
        col, row = ~self.transform * (grid.transform.c, grid.transform.f)
        if abs(col - round(col)) > PHASE_TOLERANCE or abs(row - round(row)) > PHASE_TOLERANCE:
            return None
        return round(row), round(col)


@dataclass(frozen=True)
class Placement:
    """One raster on a lattice: which input it is and where its first pixel sits."""

    index: int
    row_off: int
    col_off: int
    height: int
    width: int


def group_by_lattice(grids: list[RasterGrid]) -> list[tuple[Lattice, list[Placement]]]:
    """Rasters grouped by shared lattice, in order of first appearance."""
    groups: list[tuple[Lattice, list[Placement]]] = []
    for i, grid in enumerate(grids):
        for lattice, members in groups:
            offset = lattice.offset_of(grid)
            if offset is not None:
                members.append(Placement(i, *offset, grid.height, grid.width))
                break
        else:
            groups.append(
                (Lattice(grid.crs, grid.transform), [Placement(i, 0, 0, grid.height, grid.width)])
            )
    return groups


@dataclass(frozen=True)
class TileGrid:
    """The output tile: CRS, transform and size."""

    crs: str
    transform: Affine
    height: int
    width: int

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        left, top = self.transform * (0, 0)
        right, bottom = self.transform * (self.width, self.height)
        return min(left, right), min(top, bottom), max(left, right), max(top, bottom)


@dataclass(frozen=True)
class IndexMap:
    """For every tile pixel, the lattice (row, col) GDAL's nearest-neighbour warp picks.

    `rows` and `cols` are OUTSIDE where the pick falls outside every raster of
    the lattice; `bounds` (row0, col0, row1, col1) encloses every pick.
    """

    rows: np.ndarray  # (H, W) int32
    cols: np.ndarray  # (H, W) int32
    bounds: tuple[int, int, int, int] | None

    def window_of(self, placement: Placement) -> Window | None:
        """The part of a raster that the tile may pick from, in the raster's own pixels."""
        if self.bounds is None:
            return None
        row0, col0, row1, col1 = self.bounds
        r0, c0 = max(row0 - placement.row_off, 0), max(col0 - placement.col_off, 0)
        r1 = min(row1 - placement.row_off, placement.height)
        c1 = min(col1 - placement.col_off, placement.width)
        if r1 <= r0 or c1 <= c0:
            return None
        return Window(c0, r0, c1 - c0, r1 - r0)


def index_map(
    lattice: Lattice, members: list[Placement], tile: TileGrid, all_bands: bool
) -> IndexMap:
    """Warp the lattice's own pixel indices onto the tile, exactly as its rasters would be.

    `all_bands` says whether the rasters are read with all their bands. GDAL's
    WarpedVRT warps a request for all its bands in one piece and a request for
    some of them block by block; its 1e-6 px approximation interpolates along
    those pieces, so a pick within that distance of a pixel edge depends on it.
    The index raster is read the same way: one band, or the first of two.
    """
    window = _lattice_window(lattice, members, tile)
    rows = np.full((tile.height, tile.width), OUTSIDE, dtype=np.int32)
    cols = np.full((tile.height, tile.width), OUTSIDE, dtype=np.int32)
    if window is None:
        return IndexMap(rows, cols, None)
    row0, col0, height, width = window
    flat = np.arange(height * width, dtype=np.int32).reshape(height, width)
    count = 1 if all_bands else 2
    profile = {
        "driver": "GTiff",
        "dtype": "int32",
        "count": count,
        "width": width,
        "height": height,
        "crs": lattice.crs,
        "transform": lattice.transform * Affine.translation(col0, row0),
    }
    with MemoryFile() as memory:
        with memory.open(**profile) as dst:
            dst.write(flat, 1)
        with (
            memory.open() as src,
            WarpedVRT(
                src,
                crs=tile.crs,
                transform=tile.transform,
                width=tile.width,
                height=tile.height,
                resampling=Resampling.nearest,
                nodata=OUTSIDE,
                src_nodata=None,
                warp_mem_limit=256,
                tolerance=EXACT,
            ) as vrt,
        ):
            picked = vrt.read(1)
    hit = picked != OUTSIDE
    if not hit.any():
        return IndexMap(rows, cols, None)
    picked_rows, picked_cols = np.divmod(picked[hit], width)
    rows[hit] = picked_rows + row0
    cols[hit] = picked_cols + col0
    bounds = (
        int(picked_rows.min()) + row0,
        int(picked_cols.min()) + col0,
        int(picked_rows.max()) + row0 + 1,
        int(picked_cols.max()) + col0 + 1,
    )
    return IndexMap(rows, cols, bounds)


def _lattice_window(lattice: Lattice, members: list[Placement], tile: TileGrid):
    """(row, col, height, width) on the lattice: the members' union under the tile's footprint."""
    row0 = min(m.row_off for m in members)
    col0 = min(m.col_off for m in members)
    row1 = max(m.row_off + m.height for m in members)
    col1 = max(m.col_off + m.width for m in members)
    left, bottom, right, top = transform_bounds(
        tile.crs, lattice.crs, *tile.bounds, densify_pts=101
    )
    corners = [~lattice.transform * (x, y) for x in (left, right) for y in (bottom, top)]
    cols, rows = zip(*corners)
    row0 = max(row0, math.floor(min(rows)) - FOOTPRINT_PAD)
    col0 = max(col0, math.floor(min(cols)) - FOOTPRINT_PAD)
    row1 = min(row1, math.ceil(max(rows)) + FOOTPRINT_PAD)
    col1 = min(col1, math.ceil(max(cols)) + FOOTPRINT_PAD)
    if row1 <= row0 or col1 <= col0:
        return None
    return row0, col0, row1 - row0, col1 - col0


@numba.njit(nogil=True, cache=True)
def _gather_cpu(image, rows, cols, row_off, col_off, fill, out):
    n_bands, height, width = image.shape
    for y in range(rows.shape[0]):
        for x in range(rows.shape[1]):
            r, c = rows[y, x] - row_off, cols[y, x] - col_off
            if rows[y, x] != -1 and 0 <= r < height and 0 <= c < width:
                for b in range(n_bands):
                    out[b, y, x] = image[b, r, c]
            else:
                for b in range(n_bands):
                    out[b, y, x] = fill


def gather(image, rows, cols, row_off: int, col_off: int, fill, out=None):
    """out[b, y, x] = image[b, rows[y, x] - row_off, cols[y, x] - col_off], `fill` off the image.

    numpy arrays go through a compiled loop that releases the GIL (for reader
    threads); any other array module (cupy) through `gather_xp`.
    """
    if isinstance(image, np.ndarray):
        if out is None:
            out = np.empty((image.shape[0], *rows.shape), dtype=image.dtype)
        _gather_cpu(image, rows, cols, row_off, col_off, image.dtype.type(fill), out)
        return out
    return gather_xp(image, rows, cols, row_off, col_off, fill, out)


def gather_xp(image, rows, cols, row_off: int, col_off: int, fill, out=None):
    """The same gather written once for numpy and cupy (arrays of one module)."""
    n_bands, height, width = image.shape
    r, c = rows - row_off, cols - col_off
    inside = (rows != OUTSIDE) & (r >= 0) & (r < height) & (c >= 0) & (c < width)
    flat = (r * width + c) * inside  # any in-range index where outside; overwritten below
    picked = image.reshape(n_bands, -1)[:, flat.ravel()].reshape(n_bands, *rows.shape)
    picked[:, ~inside] = fill
    if out is None:
        return picked
    out[...] = picked
    return out
