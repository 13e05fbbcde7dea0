"""Warping onto the tile against GDAL's own warp of every scene and mask (nearest through
index maps; bilinear, cubic and average through the warper), and the gathers against
each other."""

from __future__ import annotations

import functools
import math
from dataclasses import replace

import numpy as np
import pytest
import rasterio
from affine import Affine
from pyproj import CRS, Geod, Transformer
from rasterio.crs import CRS as RioCRS
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.warp import reproject
from shapely.geometry import box

from s2basemap.aoi import AOI
from s2basemap.composite import (
    Device,
    composite_column,
    composite_tile,
    fused_stack,
    kernel_scales,
    stack_tile,
    tile_grid,
)
from s2basemap.grid import output_grid
from s2basemap.masktags import OUTSIDE as MASK_OUTSIDE
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

# reproject has GDAL approximate the transformation to 1/8 px, with no way to ask for
# less; that moves nearest picks and kernels. GDAL transforms a row of at most 5 points
# exactly (GDALApproxTransform), so the reference warps strips of 4 columns: 4 pixel
# centres a row, or 5 pixel edges (average).
STRIP = 4
STRIP_PAD = 8  # source pixels read around a strip's footprint: more than any kernel's reach


@functools.cache
def transformer(src_crs: str, dst_crs: str) -> Transformer:
    return Transformer.from_crs(src_crs, dst_crs, always_xy=True)


def gdal_warp(data, src_crs, src_transform, src_nodata, grid, tile_id, resampling, **options):
    """`data` (bands, rows, cols) on the tile, warped by GDAL (rasterio.warp.reproject) on its
    own, exactly, in strips; nodata as the source's; `options` are GDAL warp options."""
    _, _, height, width = grid.tile_window(tile_id)
    transform = grid.tile_transform(tile_id)
    # where the tile's pixel corners fall on the source: each strip's source window
    rows, cols = np.mgrid[0 : height + 1, 0 : width + 1]
    xs, ys = transformer(grid.crs, str(src_crs)).transform(*(transform * (cols, rows)))
    src_cols, src_rows = ~src_transform * (xs, ys)
    out = np.full((len(data), height, width), src_nodata, dtype=data.dtype)
    for col in range(0, width, STRIP):
        strip_width = min(STRIP, width - col)
        corners = np.s_[:, col : col + strip_width + 1]
        r0 = max(math.floor(src_rows[corners].min()) - STRIP_PAD, 0)
        c0 = max(math.floor(src_cols[corners].min()) - STRIP_PAD, 0)
        r1 = min(math.ceil(src_rows[corners].max()) + STRIP_PAD, data.shape[1])
        c1 = min(math.ceil(src_cols[corners].max()) + STRIP_PAD, data.shape[2])
        if r1 <= r0 or c1 <= c0:
            continue  # the strip is off the raster: nodata
        part = out[:, :, col : col + strip_width].copy()
        reproject(
            np.ascontiguousarray(data[:, r0:r1, c0:c1]),
            part,
            src_transform=src_transform * Affine.translation(c0, r0),
            src_crs=src_crs,
            src_nodata=src_nodata,
            dst_transform=transform * Affine.translation(col, 0),
            dst_crs=grid.crs,
            dst_nodata=src_nodata,
            resampling=resampling,
            **options,
        )
        out[:, :, col : col + strip_width] = part
    return out


@functools.cache
def gdal_nearest(scene, grid, tile_id) -> tuple[np.ndarray, np.ndarray]:
    """The scene's four bands and its mask on the tile by GDAL's nearest warp (the mask
    MASK_OUTSIDE off the scene). Nearest takes every band from one source pixel, so the
    mask rides along as a fifth band, plus one: its valid 0 is not the scene's nodata."""
    with rasterio.open(scene.tif) as src, rasterio.open(scene.mask) as mask:
        assert (mask.crs, mask.transform, mask.shape) == (src.crs, src.transform, src.shape)
        data = np.concatenate([src.read([1, 2, 3, 4]), mask.read([1]).astype(np.uint16) + 1])
        warped = gdal_warp(data, src.crs, src.transform, 0, grid, tile_id, Resampling.nearest)
    return warped[:4], np.where(warped[4] == 0, MASK_OUTSIDE, warped[4] - 1).astype(np.uint8)


def gdal_resampled(scene, grid, tile_id, resampling) -> np.ndarray:
    """The scene's four bands on the tile by GDAL's warp with `resampling`, its kernel
    scaled by the pixel sizes on the ground at the tile's centre (ground_scales)."""
    xscale, yscale = ground_scales(scene.tif, grid, tile_id)
    with rasterio.open(scene.tif) as src:
        return gdal_warp(
            src.read([1, 2, 3, 4]),
            src.crs,
            src.transform,
            src.nodata,
            grid,
            tile_id,
            resampling,
            XSCALE=repr(xscale),
            YSCALE=repr(yscale),
        )


def tile_inside(grid, tile_id, aoi) -> np.ndarray:
    """The tile's pixels whose centres are in the AOI."""
    _, _, height, width = grid.tile_window(tile_id)
    return geometry_mask(
        [aoi.in_crs(grid.crs)],
        out_shape=(height, width),
        transform=grid.tile_transform(tile_id),
        invert=True,
    )


def gdal_stack(scenes, grid, tile_id, aoi, resampling):
    """The tile's stack from GDAL's own warps of each scene and mask (masks with nearest);
    valid where the mask says so, every band has a value and the pixel is in the AOI."""
    inside = tile_inside(grid, tile_id, aoi)
    nearest = [gdal_nearest(scene, grid, tile_id) for scene in scenes]
    masks = np.stack([mask for _, mask in nearest])
    if resampling == Resampling.nearest:
        values = np.stack([bands for bands, _ in nearest])
    else:
        values = np.stack([gdal_resampled(s, grid, tile_id, resampling) for s in scenes])
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


def tiles_to_compare(crs: str):
    """The grid of 128 px tiles in `crs` and three of its tiles (west, middle, east): the
    reference warps each raster in 32 strips a tile."""
    aoi = AOI(AOI_4326, CRS.from_epsg(4326))
    grid = output_grid(aoi, crs, TARGETS[crs], tile_size=128)
    tiles = grid.tile_ids(aoi.in_crs(grid.crs))
    return aoi, grid, [tiles[0], tiles[len(tiles) // 2], tiles[-1]]


@pytest.mark.parametrize("crs", list(TARGETS))
def test_index_map_warp_equals_gdal_exact_warp(scenes, crs):
    aoi, grid, tiles = tiles_to_compare(crs)
    for tile_id in tiles:
        expected_values, expected_valid = gdal_stack(scenes, grid, tile_id, aoi, Resampling.nearest)
        values, valid = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest, threads=3)
        np.testing.assert_array_equal(values, expected_values)
        np.testing.assert_array_equal(valid, expected_valid)
        assert expected_valid.any() and (~expected_valid).any()  # the comparison has both kinds


GEOD = Geod(ellps="WGS84")


def ground_metres(crs, start, end) -> float:
    """The geodesic distance between two points given in `crs`."""
    lons, lats = transformer(str(crs), "EPSG:4326").transform(*zip(start, end, strict=True))
    return GEOD.inv(lons[0], lats[0], lons[1], lats[1])[2]


def ground_scales(path, grid, tile_id) -> tuple[float, float]:
    """Tile pixels per source pixel along the tile's x and y axes at the tile's centre, from
    lengths on the ground: a source pixel's (UTM is conformal, so the same whichever way)
    over a tile pixel's along x and along y."""
    _, _, height, width = grid.tile_window(tile_id)
    transform = grid.tile_transform(tile_id)
    centre = transform * (width / 2, height / 2)
    with rasterio.open(path) as src:
        src_crs, pixel = src.crs, src.res[0]
    x, y = transformer(grid.crs, str(src_crs)).transform(*centre)
    source = ground_metres(src_crs, (x, y), (x + pixel, y))
    along_x = ground_metres(grid.crs, centre, transform * (width / 2 + 1, height / 2))
    along_y = ground_metres(grid.crs, centre, transform * (width / 2, height / 2 + 1))
    return source / along_x, source / along_y


@pytest.mark.parametrize("crs", list(TARGETS))
def test_the_kernel_scales_are_the_ratio_of_pixel_sizes_on_the_ground(scenes, crs):
    _, grid, tiles = tiles_to_compare(crs)
    for tile_id in tiles:
        for scene in scenes:
            expected = ground_scales(scene.tif, grid, tile_id)
            scales = kernel_scales(RasterGrid.of(scene.tif), tile_grid(grid, tile_id))
            assert scales == pytest.approx(expected, rel=1e-6), (tile_id, scene.id)
            if crs == "EPSG:4326":
                # 0.0001 deg is about 9.1 m east-west and 11.1 m north-south at 35 N: GDAL
                # widens the kernels below 0.95, so these tiles test that too
                assert scales == pytest.approx((10 / 9.1, 10 / 11.1), rel=0.01)
            else:  # 10 m on 10 m: Albers stretches or shrinks a pixel by under 1 % here
                assert scales == pytest.approx((1, 1), abs=0.02)


@pytest.mark.parametrize("resampling", ["bilinear", "cubic", "average"])
@pytest.mark.parametrize("crs", list(TARGETS))
def test_other_resampling_equals_gdal_warp(scenes, crs, resampling):
    """composite.resampling other than nearest: each scene through GDAL's warper with the
    kernel scaled by the pixel sizes on the ground; masks still nearest."""
    aoi, grid, tiles = tiles_to_compare(crs)
    tile_id = tiles[1]
    method = Resampling[resampling]
    scenes = scenes[0], scenes[2], scenes[4]  # one on each lattice: the warper's costly here
    expected_values, expected_valid = gdal_stack(scenes, grid, tile_id, aoi, method)
    values, valid = stack_tile(scenes, grid, tile_id, aoi, method, threads=2)
    # The code's warper transforms to within 1e-6 px (warp.EXACT), the reference exactly:
    # a value that close to a half rounds the other way, by one (8 of 196,608 here).
    diff = values.astype(np.int32) - expected_values
    assert np.abs(diff).max() <= 1
    assert np.count_nonzero(diff) <= 2e-4 * diff.size, np.count_nonzero(diff)
    np.testing.assert_array_equal(valid, expected_valid)
    assert expected_valid.any() and (~expected_valid).any()
    # and it is not nearest's stack: the zone 16 scenes (rotated) and the 5 m lattice
    # (half a pixel off) are resampled
    nearest, _ = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest)
    assert (values != nearest).any(axis=1).mean() > 0.3


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


def as_acquisitions(scenes, grid, tile_id):
    """The fixture's scenes as acquisitions: two of three scenes each (zone 15 and zone
    16 rasters of the same ground), and one alone; tile centres west, east and south of
    the tile, so that each member of an acquisition supplies part of it."""
    _, _, height, width = grid.tile_window(tile_id)
    transform = grid.tile_transform(tile_id)
    west, east, south = (
        transform * p for p in ((0, height / 2), (width, height / 2), (width / 2, height))
    )
    plan = [
        ("A", west),
        ("B", west),
        ("C", east),
        ("A", east),
        ("B", south),
        ("", None),
        ("C", south),
    ]
    return [
        replace(scene, acquisition=name, centre=centre)
        for scene, (name, centre) in zip(scenes, plan, strict=True)
    ]


def reference_fused(scenes, grid, tile_id, aoi):
    """The rule in numpy, from GDAL's warps: per acquisition and pixel, of the scenes with
    data (mask neither outside nor nodata), the nearest tile centre's; ties to the
    smaller id. (A, 4, H, W) values and (A, H, W) validity, acquisitions as first seen."""
    _, _, height, width = grid.tile_window(tile_id)
    inside = tile_inside(grid, tile_id, aoi)
    rows, cols = np.mgrid[0:height, 0:width]
    x, y = grid.tile_transform(tile_id) * (cols + 0.5, rows + 0.5)
    groups = {}
    for i, scene in enumerate(scenes):
        groups.setdefault(scene.acquisition or scene.id, []).append(i)
    values, valid = [], []
    for members in groups.values():
        members = sorted(members, key=lambda i: scenes[i].id)
        warped = [gdal_nearest(scenes[i], grid, tile_id) for i in members]
        masks = np.stack([m for _, m in warped])
        data = (masks != MASK_OUTSIDE) & ((masks & 1) == 0)
        far = np.stack(
            [
                np.zeros(x.shape)  # alone: nothing to compare
                if scenes[i].centre is None
                else (x - scenes[i].centre[0]) ** 2 + (y - scenes[i].centre[1]) ** 2
                for i in members
            ]
        )
        far[~data] = np.inf
        win = np.argmin(far, axis=0)
        claimed = np.take_along_axis(data, win[None], 0)[0]
        bands = np.stack([b for b, _ in warped])
        fused = np.take_along_axis(bands, win[None, None], 0)[0] * claimed
        mask = np.take_along_axis(masks, win[None], 0)[0]
        values.append(fused)
        valid.append(claimed & (mask == 0) & (fused > 0).all(axis=0) & inside)
    return np.stack(values).astype(np.uint16), np.stack(valid)


def test_an_acquisitions_overlapping_scenes_fuse_into_one_observation(scenes):
    """One layer per acquisition, on the host and on the device path, as the numpy
    rule from GDAL's warps gives it; every member supplies some of its acquisition."""
    aoi, grid, tiles = tiles_to_compare("EPSG:5070")
    tile_id = tiles[1]
    fused = as_acquisitions(scenes, grid, tile_id)
    expected_values, expected_valid = reference_fused(fused, grid, tile_id, aoi)
    assert len(expected_values) == 4
    for device in (None, Device(np)):
        stack = fused_stack(fused, grid, tile_id, aoi, Resampling.nearest, 2, device)
        assert [a.id for a in stack.acquisitions] == ["A", "B", "C", fused[5].id]
        np.testing.assert_array_equal(stack.valid, expected_valid)
        # the values of valid observations: a method reads no others
        seen = np.broadcast_to(expected_valid[:, None], expected_values.shape)
        np.testing.assert_array_equal(
            np.where(seen, stack.values, 0), np.where(seen, expected_values, 0)
        )
        unfused = stack_tile(scenes, grid, tile_id, aoi, Resampling.nearest)[1]
        assert stack.scene_observations == int(unfused.sum()) > int(stack.valid.sum())
    # C's members, both mostly clear here, each supply part of its layer
    for i in stack.acquisitions[2].scenes:
        own = gdal_nearest(fused[i], grid, tile_id)[0]
        assert ((stack.values[2] == own).all(axis=0) & stack.valid[2]).mean() > 0.2, i


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
