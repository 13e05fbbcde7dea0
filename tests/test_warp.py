"""Index-map warping against GDAL's exact per-scene warp, and the gathers against each other."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import CRS
from rasterio.crs import CRS as RioCRS
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from shapely.geometry import box

from s2basemap.aoi import AOI
from s2basemap.composite import (
    MASK_OUTSIDE,
    Device,
    composite_column,
    composite_tile,
    stack_tile,
    warp,
)
from s2basemap.grid import output_grid
from s2basemap.percentile import gpu_available
from s2basemap.warp import OUTSIDE, Lattice, RasterGrid, gather, gather_xp, group_by_lattice
from testworld.stacks import write_tile_scenes

# A rectangle across the UTM 15N/16N boundary (-90 deg), near Memphis.
AOI_4326 = box(-90.03, 34.98, -89.975, 35.02)

TARGETS = {
    "EPSG:5070": (10.0, 10.0),
    "EPSG:4326": (0.0001, 0.0001),
    "EPSG:32615": (10.0, 10.0),  # the western scenes' own CRS: picks sit on pixel centres
}


def exact_warp_stack(scenes, grid, tile_id, aoi):
    """The previous composite input: every scene and mask warped by GDAL on its own."""
    _, _, height, width = grid.tile_window(tile_id)
    inside = geometry_mask(
        [aoi.in_crs(grid.crs)],
        out_shape=(height, width),
        transform=grid.tile_transform(tile_id),
        invert=True,
    )
    values = np.stack(
        [warp(s.tif, grid, tile_id, Resampling.nearest, 0, [1, 2, 3, 4]) for s in scenes]
    )
    masks = np.stack(
        [warp(s.mask, grid, tile_id, Resampling.nearest, MASK_OUTSIDE, 1) for s in scenes]
    )
    valid = (masks == 0) & (values > 0).all(axis=1) & inside
    return values, valid


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("stack")
    bounds = AOI_4326.buffer(0.01).bounds
    # two lattices in zone 15 (a 5 m phase shift), one in zone 16
    west = write_tile_scenes(
        root, bounds, "EPSG:4326", 4, zones=(32615,), seed=1, phases=(0.0, 0.0, 5.0)
    )
    east = write_tile_scenes(root, bounds, "EPSG:4326", 3, zones=(32616,), seed=2)
    return west + east


@pytest.mark.parametrize("crs", list(TARGETS))
def test_index_map_warp_equals_gdal_exact_warp(scenes, crs):
    aoi = AOI(AOI_4326, CRS.from_epsg(4326))
    grid = output_grid(aoi, crs, TARGETS[crs], tile_size=256)
    tiles = grid.tile_ids(aoi.in_crs(grid.crs))
    assert len(tiles) >= 2
    for tile_id in tiles:
        expected_values, expected_valid = exact_warp_stack(scenes, grid, tile_id, aoi)
        values, valid = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest, threads=3)
        np.testing.assert_array_equal(values, expected_values)
        np.testing.assert_array_equal(valid, expected_valid)
        assert expected_valid.any() and (~expected_valid).any()  # the comparison has both kinds


def test_the_device_path_gathers_the_same_stack(scenes):
    """The GPU path's code (gather_xp, index maps copied to the device) run with numpy."""
    aoi = AOI(AOI_4326, CRS.from_epsg(4326))
    grid = output_grid(aoi, "EPSG:5070", TARGETS["EPSG:5070"], tile_size=256)
    tile_id = grid.tile_ids(aoi.in_crs(grid.crs))[0]
    host = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest, threads=2)
    device = Device(np)
    on_device = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest, threads=2, device=device)
    np.testing.assert_array_equal(on_device[0], host[0])
    np.testing.assert_array_equal(on_device[1], host[1])
    assert len(device.maps) == 6  # 3 lattices x (scene rasters, masks): each map copied once


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="needs cupy and a CUDA device")
def test_the_gpu_gathers_and_composites_what_the_cpu_does(scenes, tmp_path):
    import cupy
    import rasterio

    aoi = AOI(AOI_4326, CRS.from_epsg(4326))
    grid = output_grid(aoi, "EPSG:5070", TARGETS["EPSG:5070"], tile_size=256)
    tile_id = grid.tile_ids(aoi.in_crs(grid.crs))[0]
    host = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest, threads=2)
    on_gpu = stack_tile(
        scenes, grid, tile_id, aoi, Resampling.nearest, threads=2, device=Device(cupy)
    )
    assert isinstance(on_gpu[0], cupy.ndarray)
    np.testing.assert_array_equal(cupy.asnumpy(on_gpu[0]), host[0])
    np.testing.assert_array_equal(cupy.asnumpy(on_gpu[1]), host[1])
    tiles = {}
    for backend in ("cpu", "gpu"):
        stats = composite_tile(
            scenes,
            grid,
            tile_id,
            aoi,
            25,
            "nearest",
            tmp_path / f"{backend}.tif",
            backend=backend,
            threads=2,
        )
        assert stats["backend"] == backend
        with rasterio.open(tmp_path / f"{backend}.tif") as src:
            tiles[backend] = src.read()
    np.testing.assert_array_equal(tiles["gpu"], tiles["cpu"])
    assert tiles["cpu"][4].max() > 0
    # a column's tiles share no device state: each is what the CPU computes
    column = next(
        t for t in grid.columns(grid.tile_ids(aoi.in_crs(grid.crs))).values() if len(t) >= 2
    )
    strips = {}
    for backend in ("cpu", "gpu"):
        composite_column(
            scenes,
            {t: [s.id for s in scenes] for t in column},
            grid,
            aoi,
            25,
            "nearest",
            tmp_path / f"column-{backend}.tif",
            backend=backend,
            threads=2,
        )
        with rasterio.open(tmp_path / f"column-{backend}.tif") as src:
            strips[backend] = src.read()
    np.testing.assert_array_equal(strips["gpu"], strips["cpu"])


def test_a_column_is_its_tiles_composited_one_by_one_and_assembles_to_the_same_mosaic(
    scenes, tmp_path
):
    import hashlib

    import rasterio

    from s2basemap.outputs import assemble

    aoi = AOI(AOI_4326, CRS.from_epsg(4326))
    grid = output_grid(aoi, "EPSG:5070", TARGETS["EPSG:5070"], tile_size=128)
    tiles = next(
        t for t in grid.columns(grid.tile_ids(aoi.in_crs(grid.crs))).values() if len(t) >= 3
    )
    # each tile stacks its own scenes (the last tile without the first scene); the
    # middle tiles have none listed, as if outside the AOI: their rows stay nodata
    top, bottom = tiles[0], tiles[-1]
    tile_scenes = {top: [s.id for s in scenes], bottom: [s.id for s in scenes[1:]]}
    stats = composite_column(
        scenes,
        tile_scenes,
        grid,
        aoi,
        25,
        "nearest",
        tmp_path / "column.tif",
        backend="cpu",
        threads=2,
    )
    assert [(s["tile"], s["scenes"]) for s in stats] == [
        (top, len(scenes)),
        (bottom, len(scenes) - 1),
    ]
    row_off, col_off, height, width = grid.column_window([top, bottom])
    assert (row_off, col_off) == grid.tile_window(top)[:2] and height > 2 * 128
    with rasterio.open(tmp_path / "column.tif") as src:
        strip = src.read()
        assert src.transform == grid.tile_transform(top)
        assert src.descriptions == ("Red", "Green", "Blue", "NIR", "count")
    pieces = {}
    for tile, chosen in ((top, scenes), (bottom, scenes[1:])):
        composite_tile(
            chosen, grid, tile, aoi, 25, "nearest", tmp_path / f"{tile}.tif", backend="cpu"
        )
        with rasterio.open(tmp_path / f"{tile}.tif") as src:
            alone = src.read()
        tile_row, _, tile_height, _ = grid.tile_window(tile)
        np.testing.assert_array_equal(
            strip[:, tile_row - row_off : tile_row - row_off + tile_height], alone
        )
        pieces[str(tmp_path / f"{tile}.tif")] = grid.tile_window(tile)
    gap = strip[:, grid.tile_window(tiles[1])[0] - row_off : grid.tile_window(bottom)[0] - row_off]
    assert gap.size and not gap.any()
    assert strip[4].max() > 0  # observations were counted
    products = {}
    column = {str(tmp_path / "column.tif"): (row_off, col_off, height, width)}
    for name, parts in (("tiles", pieces), ("column", column)):
        assemble(
            grid,
            parts,
            tmp_path / f"{name}-mosaic.tif",
            tmp_path / f"{name}-count.tif",
            "deflate",
            {},
        )
        products[name] = [
            hashlib.sha256((tmp_path / f"{name}-{kind}.tif").read_bytes()).hexdigest()
            for kind in ("mosaic", "count")
        ]
    assert products["column"] == products["tiles"]


def test_scenes_share_a_lattice_only_when_crs_and_transform_say_so():
    crs15, crs16 = RioCRS.from_epsg(32615), RioCRS.from_epsg(32616)
    base = Affine(10, 0, 399960, 0, -10, 4000020)
    grids = [
        RasterGrid(crs15, base, 100, 100),
        RasterGrid(crs15, base * Affine.translation(37, -12), 50, 60),  # whole pixels away
        RasterGrid(crs15, base * Affine.translation(0.5, 0), 100, 100),  # half a pixel: no
        RasterGrid(crs16, base, 100, 100),  # same numbers, other zone: no
        RasterGrid(crs15, Affine(20, 0, 399960, 0, -20, 4000020), 10, 10),  # 20 m: no
    ]
    groups = group_by_lattice(grids)
    assert [[m.index for m in members] for _, members in groups] == [[0, 1], [2], [3], [4]]
    assert (groups[0][1][1].row_off, groups[0][1][1].col_off) == (-12, 37)
    assert Lattice(crs15, base).offset_of(grids[1]) == (-12, 37)


def test_gather_is_the_same_on_the_compiled_loop_and_the_array_code():
    rng = np.random.default_rng(3)
    image = rng.integers(0, 60000, (4, 50, 70), dtype=np.uint16)
    rows = rng.integers(-5, 60, (40, 45)).astype(np.int32)
    cols = rng.integers(-5, 80, (40, 45)).astype(np.int32)
    rows[rng.random(rows.shape) < 0.1] = OUTSIDE
    compiled = gather(image, rows, cols, 3, 7, 9)
    array_code = gather_xp(image, rows, cols, 3, 7, 9)
    np.testing.assert_array_equal(compiled, array_code)
    # an independent per-pixel reference
    for y, x in np.ndindex(rows.shape):
        r, c = rows[y, x] - 3, cols[y, x] - 7
        on = rows[y, x] != OUTSIDE and 0 <= r < 50 and 0 <= c < 70
        assert (compiled[:, y, x] == (image[:, r, c] if on else 9)).all()
