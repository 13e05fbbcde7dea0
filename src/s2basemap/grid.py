"""The output grid: the target CRS and resolution, snapped over the AOI, cut into tiles.

Tiles bound a composite's memory; a column of them (north to south) is one
composite job, which keeps a state-sized year's DAG small and matches the
west-to-east sweep that bounds the disk.

The resolution is in the target CRS's own units (metres for EPSG:5070, degrees
for EPSG:4326), so nothing here assumes metres.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from affine import Affine
from pyproj import CRS
from shapely.geometry import box
from shapely.geometry.base import BaseGeometry

from s2basemap.aoi import AOI, WGS84, reproject_geometry

TILE_ID_PATTERN = r"[0-9]{4}_[0-9]{4}"
COLUMN_ID_PATTERN = r"[0-9]{4}"
EPS = 1e-9  # in pixels: keeps float noise from adding a row or column


@dataclass(frozen=True)
class OutputGrid:
    crs: str
    x0: float  # left edge
    y0: float  # top edge
    res_x: float
    res_y: float
    width: int
    height: int
    tile_size: int

    @property
    def transform(self) -> Affine:
        return Affine(self.res_x, 0.0, self.x0, 0.0, -self.res_y, self.y0)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (
            self.x0,
            self.y0 - self.height * self.res_y,
            self.x0 + self.width * self.res_x,
            self.y0,
        )

    @staticmethod
    def tile_column(tile_id: str) -> int:
        """The tile's column in the grid, 0 at the west edge."""
        return int(tile_id.split("_")[1])

    @staticmethod
    def columns(tile_ids: list[str]) -> dict[str, list[str]]:
        """Column id -> its tiles north to south, columns west to east."""
        columns: dict[str, list[str]] = {}
        for tile_id in sorted(tile_ids, key=lambda t: (OutputGrid.tile_column(t), t)):
            columns.setdefault(tile_id.split("_")[1], []).append(tile_id)
        return columns

    def column_window(self, tile_ids: list[str]) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) of the strip from a column's first tile to its last."""
        first, last = self.tile_window(min(tile_ids)), self.tile_window(max(tile_ids))
        return first[0], first[1], last[0] + last[2] - first[0], first[3]

    def tile_window(self, tile_id: str) -> tuple[int, int, int, int]:
        """(row_off, col_off, height, width) of a tile in the grid."""
        row, col = (int(part) for part in tile_id.split("_"))
        row_off, col_off = row * self.tile_size, col * self.tile_size
        return (
            row_off,
            col_off,
            min(self.tile_size, self.height - row_off),
            min(self.tile_size, self.width - col_off),
        )

    def tile_transform(self, tile_id: str) -> Affine:
        row_off, col_off, _, _ = self.tile_window(tile_id)
        return self.transform * Affine.translation(col_off, row_off)

    def tile_bounds(self, tile_id: str) -> tuple[float, float, float, float]:
        row_off, col_off, height, width = self.tile_window(tile_id)
        left, top = self.transform * (col_off, row_off)
        right, bottom = self.transform * (col_off + width, row_off + height)
        return left, bottom, right, top

    def tile_ids(self, aoi_in_grid_crs: BaseGeometry) -> list[str]:
        """Tiles that intersect the AOI polygon (not just its bounding box)."""
        ids = []
        for row in range(math.ceil(self.height / self.tile_size)):
            for col in range(math.ceil(self.width / self.tile_size)):
                tile_id = f"{row:04d}_{col:04d}"
                if box(*self.tile_bounds(tile_id)).intersects(aoi_in_grid_crs):
                    ids.append(tile_id)
        return ids

    def tile_footprint_4326(self, tile_id: str) -> BaseGeometry:
        return reproject_geometry(
            box(*self.tile_bounds(tile_id)), CRS.from_user_input(self.crs), WGS84
        )


def output_grid(aoi: AOI, crs: str, resolution: tuple[float, float], tile_size: int) -> OutputGrid:
    """The grid covering the AOI, its edges on whole multiples of the resolution."""
    minx, miny, maxx, maxy = aoi.in_crs(crs).bounds
    res_x, res_y = resolution
    x0 = math.floor(minx / res_x + EPS) * res_x
    y0 = math.ceil(maxy / res_y - EPS) * res_y
    width = max(1, math.ceil((maxx - x0) / res_x - EPS))
    height = max(1, math.ceil((y0 - miny) / res_y - EPS))
    return OutputGrid(crs, x0, y0, res_x, res_y, width, height, tile_size)


def scene_columns(tile_scenes: dict[str, list[str]]) -> dict[str, tuple[int, int]]:
    """(first, last) output-tile column of each scene that touches a tile.

    A month's work goes west to east by these: a scene is fetched as the sweep
    reaches its first column, and its raster is deleted once its last column's
    tiles are composited, so only a band of the month's scenes is on disk.
    """
    columns: dict[str, tuple[int, int]] = {}
    for tile, scenes in tile_scenes.items():
        column = OutputGrid.tile_column(tile)
        for scene_id in scenes:
            first, last = columns.get(scene_id, (column, column))
            columns[scene_id] = (min(first, column), max(last, column))
    return columns
