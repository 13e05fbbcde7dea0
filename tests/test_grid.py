"""s2basemap.grid: the output grid, its tiles and columns."""

from __future__ import annotations

import pytest
from pyproj import CRS
from shapely.geometry import box

from s2basemap.aoi import AOI, read_aoi
from s2basemap.grid import output_grid


def test_grid_snaps_to_whole_pixels_and_keeps_only_tiles_touching_the_aoi():
    # an L-shaped AOI: its bounding box has a corner the AOI never touches
    shape = box(0, 0, 1000, 300).union(box(0, 0, 300, 1000))
    aoi = AOI(shape, CRS.from_epsg(32615))
    grid = output_grid(aoi, "EPSG:32615", (30.0, 30.0), tile_size=10)  # 300 m tiles
    assert (grid.x0, grid.y0, grid.width, grid.height) == (0.0, 1020.0, 34, 34)
    tiles = grid.tile_ids(shape)
    assert "0000_0000" in tiles and "0003_0000" in tiles and "0003_0003" in tiles
    assert "0000_0003" not in tiles  # top-right corner of the L's bounding box
    assert grid.tile_window("0003_0003") == (30, 30, 4, 4)  # the last tile is cut at the edge


def test_a_column_holds_its_tiles_north_to_south_and_spans_its_gaps():
    # a U-shaped AOI of 300 m tiles: the right arm's column has a gap in the middle
    shape = box(0, 0, 1000, 100).union(box(0, 0, 300, 1000)).union(box(700, 850, 1000, 1000))
    aoi = AOI(shape, CRS.from_epsg(32615))
    grid = output_grid(aoi, "EPSG:32615", (30.0, 30.0), tile_size=10)
    columns = grid.columns(list(reversed(grid.tile_ids(shape))))
    assert list(columns) == ["0000", "0001", "0002", "0003"]
    assert columns["0000"] == ["0000_0000", "0001_0000", "0002_0000", "0003_0000"]
    assert columns["0003"] == ["0000_0003", "0003_0003"]
    assert grid.column_window(columns["0003"]) == (0, 30, 34, 4)  # the gap rows included
    assert grid.column_window(columns["0000"]) == (0, 0, 34, 10)


def test_grid_in_degrees(world):
    aoi = read_aoi(world.aoi_gpkg)
    grid = output_grid(aoi, "EPSG:4326", (0.0001, 0.0001), tile_size=256)
    minx, miny, maxx, maxy = aoi.geometry_4326.bounds
    assert grid.x0 <= minx < grid.x0 + 0.0001 and grid.y0 - 0.0001 < maxy <= grid.y0
    _, bottom, right, _ = grid.bounds
    assert right >= maxx and bottom <= miny
    assert grid.width == pytest.approx((maxx - minx) / 0.0001, abs=2)
