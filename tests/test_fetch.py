"""Per-scene fetch over real HTTP range requests, checked against the source pixels."""

from __future__ import annotations

import geopandas
import numpy as np
import pytest
import rasterio
import shapely

from s2basemap.aoi import read_aoi
from s2basemap.fetch import MARGIN_PIXELS, FetchOptions, fetch_scene
from s2basemap.search import BANDS

FAST = FetchOptions(retries=1, backoff_seconds=0.05, timeout_seconds=10)


def spec_for(world, scene, offset_dn):
    return {"id": scene.id, "assets": {b: world.url(scene.path(b)) for b in BANDS},
            "offset": {"dn": offset_dn, "source": "metadata", "reason": "test"}}


def reference(world, scene, aoi_path, offset_dn):
    """Expected fetched bands over the whole source tile, computed independently:
    numpy on the local source files, geopandas for the AOI grown by the fetch's
    margin of source pixels (the exact clip is on the output grid), shapely
    point-in-polygon for pixel centres, np.repeat for the 20 m SCL."""
    with rasterio.open(scene.path("red")) as src:
        transform, crs, shape = src.transform, src.crs, src.shape
    aoi = geopandas.read_file(aoi_path).to_crs(crs).geometry.union_all().buffer(MARGIN_PIXELS * 10)
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]]
    x, y = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    inside = shapely.contains_xy(aoi, np.asarray(x), np.asarray(y)).reshape(shape)
    expected = []
    for band in BANDS[:4]:
        with rasterio.open(scene.path(band)) as src:
            dn = src.read(1).astype(np.int64)
        value = np.where(dn == 0, 0, np.maximum(dn + offset_dn, 1))
        expected.append(np.where(inside, value, 0))
    with rasterio.open(scene.path("scl")) as src:
        scl = src.read(1).repeat(2, axis=0).repeat(2, axis=1)
    expected.append(np.where(inside, scl, 0))
    return np.stack(expected), transform, inside


@pytest.mark.parametrize(("scene_id", "offset_dn"), [
    ("S2A_15SYU_20220128_0_L2A", -1000),  # baseline 04.00 with the offset in its pixels
    ("S2A_16SBU_20220105_0_L2A", 0),  # baseline 03.01 in the other UTM zone
])
def test_fetched_pixels_equal_the_source_inside_the_aoi(world, http_server, tmp_path, scene_id, offset_dn):
    scene = world.scene(scene_id)
    tif = tmp_path / "scene.tif"
    record = fetch_scene(spec_for(world, scene, offset_dn), read_aoi(world.aoi_gpkg), tif, FAST)
    assert record["status"] == "ok" and record["offset"]["dn"] == offset_dn
    expected, src_transform, inside = reference(world, scene, world.aoi_gpkg, offset_dn)
    with rasterio.open(tif) as out:
        fetched = out.read()
        assert out.crs.to_epsg() == scene.epsg and out.nodata == 0
        assert out.dtypes == ("uint16",) * 5 and out.compression is not None
        assert [out.descriptions[i] for i in range(5)] == list(BANDS)
        col = (out.transform.c - src_transform.c) / 10
        row = (src_transform.f - out.transform.f) / 10
    assert col == int(col) and row == int(row)  # the window sits on the source grid
    col, row = int(col), int(row)
    window = expected[:, row:row + fetched.shape[1], col:col + fetched.shape[2]]
    np.testing.assert_array_equal(fetched, window)
    # every source pixel inside the AOI (and its margin) made it into the window
    assert inside.sum() == inside[row:row + fetched.shape[1], col:col + fetched.shape[2]].sum()
    assert record["aoi_pixels"] == inside.sum()
    # dark water carries DN <= 1000 in offset scenes: clamped to 1, never wrapped to ~65k
    if offset_dn:
        assert fetched[:4].max() < 10000 and (fetched[3][fetched[4] == 6] == 1).any()


def test_partial_scene_reads_less_than_half_of_its_files(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220128_0_L2A")
    fetch_scene(spec_for(world, scene, -1000), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    served = sum(n for path, n in http_server.bytes_sent.items() if scene.id in path)
    total = sum(scene.path(b).stat().st_size for b in BANDS)
    assert 0 < served < total / 2, f"served {served} of {total} bytes"


def test_pixels_overrule_wrong_offset_metadata(world, http_server, tmp_path):
    scene = world.scene("S2B_16SBU_20220224_0_L2A")  # claims an offset its pixels lack
    record = fetch_scene(spec_for(world, scene, -1000), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    assert record["offset"]["dn"] == 0 and record["offset"]["source"] == "pixels"
    expected, src_transform, _ = reference(world, scene, world.aoi_gpkg, 0)
    with rasterio.open(tmp_path / "s.tif") as out:
        col = int((out.transform.c - src_transform.c) / 10)
        row = int((src_transform.f - out.transform.f) / 10)
        np.testing.assert_array_equal(out.read(), expected[:, row:row + out.height, col:col + out.width])


def test_scene_outside_the_aoi_is_skipped(world, http_server, tmp_path):
    scene = world.scene("S2A_16SBU_20220105_0_L2A")  # the west part of this AOI is off this tile
    aoi = read_aoi(world.aoi_multi_geojson)
    west_only = type(aoi)(min(aoi.geometry.geoms, key=lambda g: g.bounds[0]), aoi.crs)
    record = fetch_scene(spec_for(world, scene, 0), west_only, tmp_path / "s.tif", FAST)
    assert record["status"] == "no_overlap"
    with rasterio.open(tmp_path / "s.tif") as out:
        assert out.read().max() == 0 and out.tags()["STATUS"] == "no_overlap"


def test_unreadable_scene_is_left_out_with_its_reason(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220128_0_L2A")
    spec = spec_for(world, scene, -1000)
    spec["assets"]["nir"] = f"{world.base_url}/cogs/does-not-exist/B08.tif"
    record = fetch_scene(spec, read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    assert record["status"] == "failed" and record["attempts"] == 2
    assert "does-not-exist/B08.tif" in record["reason"]
    with rasterio.open(tmp_path / "s.tif") as out:
        assert out.read().max() == 0 and out.tags()["STATUS"] == "failed"
