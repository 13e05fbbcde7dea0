"""Per-scene fetch over real HTTP range requests, checked against the source pixels."""

from __future__ import annotations

import json

import geopandas
import numpy as np
import pytest
import rasterio
import shapely

from s2basemap.aoi import read_aoi
from s2basemap.failures import OutageWatch, SceneUnavailable, reset_outage
from s2basemap.fetch import (
    MARGIN_PIXELS,
    FetchOptions,
    aoi_pixels_of,
    fetch_scene,
    fetch_scene_job,
)
from s2basemap.search import BANDS
from testworld.servers import free_port

FAST = FetchOptions(retries=1, backoff_seconds=0.05, timeout_seconds=10)


def spec_for(world, scene, offset_dn):
    return {
        "id": scene.id,
        "assets": {b: world.url(scene.path(b)) for b in BANDS},
        "offset": {"dn": offset_dn, "source": "metadata", "reason": "test"},
    }


def reference(world, scene, aoi_path, offset_dn):
    """Expected fetched bands over the whole source tile, computed independently:
    numpy on the local source files, geopandas for the AOI grown by the fetch's
    margin of source pixels (the exact clip is on the output grid), shapely
    point-in-polygon for pixel centres, np.repeat for the 20 m SCL."""
    with rasterio.open(scene.path("red")) as src:
        transform, crs, shape = src.transform, src.crs, src.shape
    aoi = geopandas.read_file(aoi_path).to_crs(crs).geometry.union_all().buffer(MARGIN_PIXELS * 10)
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
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


@pytest.mark.parametrize(
    ("scene_id", "offset_dn"),
    [
        ("S2A_15SYU_20220214_0_L2A", -1000),  # baseline 04.00 with the offset in its pixels
        ("S2A_16SBU_20220105_0_L2A", 0),  # baseline 03.01 in the other UTM zone
    ],
)
def test_fetched_pixels_equal_the_source_inside_the_aoi(
    world, http_server, tmp_path, scene_id, offset_dn
):
    scene = world.scene(scene_id)
    tif = tmp_path / "scene.tif"
    record = fetch_scene(spec_for(world, scene, offset_dn), read_aoi(world.aoi_gpkg), tif, FAST)
    assert record["status"] == "ok" and record["offset"]["dn"] == offset_dn
    expected, src_transform, inside = reference(world, scene, world.aoi_gpkg, offset_dn)
    with rasterio.open(tif) as out:
        fetched = out.read()
        assert out.crs.to_epsg() == scene.epsg and out.nodata == 0
        assert out.dtypes == ("uint16",) * 5 and out.nodata == 0
        # scratch files: zstd at level 1, band by band (see fetch.scene_profile)
        assert out.compression.name == "zstd" and out.interleaving.name == "band"
        assert [out.descriptions[i] for i in range(5)] == list(BANDS)
        col = (out.transform.c - src_transform.c) / 10
        row = (src_transform.f - out.transform.f) / 10
    assert col == int(col) and row == int(row)  # the window sits on the source grid
    col, row = int(col), int(row)
    window = expected[:, row : row + fetched.shape[1], col : col + fetched.shape[2]]
    np.testing.assert_array_equal(fetched, window)
    # every source pixel inside the AOI (and its margin) made it into the window
    assert inside.sum() == inside[row : row + fetched.shape[1], col : col + fetched.shape[2]].sum()
    assert record["aoi_pixels"] == inside.sum()
    # dark water carries DN <= 1000 in offset scenes: clamped to 1, never wrapped to ~65k
    if offset_dn:
        assert fetched[:4].max() < 10000 and (fetched[3][fetched[4] == 6] == 1).any()


def test_only_strips_crossing_the_aoi_border_are_rasterised():
    from affine import Affine
    from rasterio.features import geometry_mask
    from rasterio.windows import Window

    grid = rasterio.io.MemoryFile().open(
        driver="GTiff", width=400, height=300, count=1, dtype="uint8", crs="EPSG:32615",
        transform=Affine(10, 0, 500_000, 0, -10, 4_000_000),
    )  # fmt: skip
    strip = Window(0, 100, 400, 100)
    whole = shapely.box(499_000, 3_990_000, 505_000, 4_001_000)
    assert aoi_pixels_of(whole, grid, strip) is None
    # a border through the strip: the pixels whose centres are inside, as rasterio counts them
    part = shapely.Polygon([(500_000, 4_000_000), (503_000, 4_000_000), (501_000, 3_997_000)])
    inside = aoi_pixels_of(part, grid, strip)
    expected = geometry_mask(
        [part], out_shape=(100, 400), transform=grid.window_transform(strip), invert=True
    )
    np.testing.assert_array_equal(inside, expected)
    assert 0 < inside.sum() < inside.size


def test_partial_scene_reads_less_than_half_of_its_files(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    fetch_scene(spec_for(world, scene, -1000), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    served = sum(n for path, n in http_server.bytes_sent.items() if scene.id in path)
    total = sum(scene.path(b).stat().st_size for b in BANDS)
    assert 0 < served < total / 2, f"served {served} of {total} bytes"


def test_pixels_overrule_wrong_offset_metadata(world, http_server, tmp_path):
    scene = world.scene("S2B_16SBU_20220224_0_L2A")  # claims an offset its pixels lack
    record = fetch_scene(
        spec_for(world, scene, -1000), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST
    )
    assert record["offset"]["dn"] == 0 and record["offset"]["source"] == "pixels"
    expected, src_transform, _ = reference(world, scene, world.aoi_gpkg, 0)
    with rasterio.open(tmp_path / "s.tif") as out:
        col = int((out.transform.c - src_transform.c) / 10)
        row = int((src_transform.f - out.transform.f) / 10)
        np.testing.assert_array_equal(
            out.read(), expected[:, row : row + out.height, col : col + out.width]
        )


def test_scene_outside_the_aoi_is_skipped(world, http_server, tmp_path):
    scene = world.scene("S2A_16SBU_20220105_0_L2A")  # the west part of this AOI is off this tile
    aoi = read_aoi(world.aoi_multi_geojson)
    west_only = type(aoi)(min(aoi.geometry.geoms, key=lambda g: g.bounds[0]), aoi.crs)
    record = fetch_scene(spec_for(world, scene, 0), west_only, tmp_path / "s.tif", FAST)
    assert record["status"] == "no_overlap"
    with rasterio.open(tmp_path / "s.tif") as out:
        assert out.read().max() == 0 and out.tags()["STATUS"] == "no_overlap"


def test_a_missing_file_is_permanent_and_left_out_at_once(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    spec = spec_for(world, scene, -1000)
    spec["assets"]["nir"] = f"{world.base_url}/cogs/does-not-exist/B08.tif"
    record = fetch_scene(spec, read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    # a 404 is the file's own: no retry could help
    assert (
        record["status"] == "failed" and record["kind"] == "permanent" and record["attempts"] == 1
    )
    assert "nir (" in record["reason"] and "does-not-exist/B08.tif" in record["reason"]
    assert "HTTP response code: 404" in record["reason"]
    with rasterio.open(tmp_path / "s.tif") as out:
        assert out.read().max() == 0 and out.tags()["STATUS"] == "failed"


def broken_copy(world, scene, band: str, name: str, content: bytes) -> str:
    """The scene's spec with one band served from a file of `content`."""
    path = world.root / "broken" / name / scene.path(band).name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return world.url(path)


def test_a_file_that_is_not_a_tiff_is_permanent(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    spec = spec_for(world, scene, -1000)
    spec["assets"]["red"] = broken_copy(world, scene, "red", "html", b"<html>busy</html>" * 40)
    record = fetch_scene(spec, read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    assert record["kind"] == "permanent" and record["attempts"] == 1
    assert "not recognized as being in a supported file format" in record["reason"]


def test_an_open_reset_past_gdals_own_retries_is_transient(world, http_server, tmp_path):
    """GDAL retries a reset connection itself, then says "not recognized as being in a
    supported file format", as for a web page: only the file's first bytes can tell."""
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    path = "/" + scene.path("red").relative_to(world.root).as_posix()
    http_server.reset_counts()
    http_server.schedule_faults({(path, n): "reset" for n in range(40)})  # an outage of one file
    try:
        with pytest.raises(SceneUnavailable) as caught:
            fetch_scene(
                spec_for(world, scene, -1000), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST
            )
    finally:
        http_server.schedule_faults({})
    entry = caught.value.entry
    assert entry["kind"] == "transient" and entry["attempts"] == FAST.retries + 1
    assert (
        "not recognized" in entry["reason"] and "first bytes could not be read" in entry["reason"]
    )
    assert http_server.faults["reset"] > FAST.retries + 1  # GDAL's own retries, then the look
    assert not (tmp_path / "s.tif").exists()


def test_a_file_shorter_than_its_tile_index_is_permanent(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    whole = scene.path("green").read_bytes()
    kept = len(whole) // 2
    spec = spec_for(world, scene, -1000)
    spec["assets"]["green"] = broken_copy(world, scene, "green", "short", whole[:kept])
    record = fetch_scene(spec, read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    # every attempt read short; the server's size settles that the file itself is short
    assert record["kind"] == "permanent" and record["attempts"] == FAST.retries + 1
    needed = int(record["reason"].split(" of the ")[1].split(" ")[0].replace(",", ""))
    assert f"truncated file: {kept:,} bytes" in record["reason"] and kept < needed <= len(whole)


def test_bytes_cut_in_transit_on_every_attempt_are_transient(world, http_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    path = "/" + scene.path("green").relative_to(world.root).as_posix()
    # the header reads whole; every later read of the file is cut in half
    http_server.schedule_faults({(path, n): "truncate" for n in range(1, 40)})
    try:
        with pytest.raises(SceneUnavailable) as caught:
            fetch_scene(
                spec_for(world, scene, -1000), read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST
            )
    finally:
        http_server.schedule_faults({})
    assert http_server.faults["truncate"] >= FAST.retries + 1
    assert (
        caught.value.entry["kind"] == "transient"
        and caught.value.entry["attempts"] == FAST.retries + 1
    )
    assert "B03.tif" in caught.value.entry["reason"]
    assert not (tmp_path / "s.tif").exists()  # never a partial scene


@pytest.mark.parametrize("outage", ["503", "refused"])
def test_an_unanswering_server_is_transient(world, http_server, tmp_path, outage):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    spec = spec_for(world, scene, -1000)
    if outage == "503":
        http_server.always_fail = {"/" + scene.path("blue").relative_to(world.root).as_posix()}
        expected = "HTTP response code: 503"
    else:
        spec["assets"]["blue"] = f"http://127.0.0.1:{free_port()}/B02.tif"
        expected = "connect to server"  # libcurl 8.8 says "Couldn't", 8.16 "Could not"
    try:
        with pytest.raises(SceneUnavailable) as caught:
            fetch_scene(spec, read_aoi(world.aoi_gpkg), tmp_path / "s.tif", FAST)
    finally:
        http_server.always_fail = set()
    entry = caught.value.entry
    assert entry["kind"] == "transient" and entry["attempts"] == FAST.retries + 1
    assert expected in entry["reason"] and "blue (" in entry["reason"]
    assert "run the workflow again" in str(caught.value)


def test_scenes_failing_in_a_row_stop_the_rest_before_any_request(world, http_server, tmp_path):
    watch = OutageWatch(tmp_path / "outage.json", limit=2)
    aoi = read_aoi(world.aoi_gpkg)
    scenes = [
        world.scene(i)
        for i in (
            "S2A_15SYU_20220128_0_L2A",
            "S2A_16SBU_20220128_0_L2A",
            "S2B_15SYU_20220204_0_L2A",
        )
    ]
    http_server.go_down()
    try:
        for scene in scenes[:2]:
            with pytest.raises(SceneUnavailable, match="unreadable after 2 attempts"):
                fetch_scene(spec_for(world, scene, -1000), aoi, tmp_path / "s.tif", FAST, watch)
        refused = http_server.faults["down"]
        with pytest.raises(SceneUnavailable) as caught:
            fetch_scene(spec_for(world, scenes[2], -1000), aoi, tmp_path / "s.tif", FAST, watch)
        assert http_server.faults["down"] == refused  # gave up without a request
    finally:
        http_server.come_up()
    assert caught.value.entry["attempts"] == 0
    assert "the imagery source looks down: 2 scenes in a row" in caught.value.entry["reason"]
    # once the source is up (a new run resets the watch), a success clears the count
    reset_outage(watch.path)
    watch.failed("one blip")
    record = fetch_scene(spec_for(world, scenes[2], -1000), aoi, tmp_path / "s.tif", FAST, watch)
    assert record["status"] == "ok" and watch.down() is None
    watch.failed("another blip")
    assert watch.down() is None  # one in a row again, not two


def test_a_fetch_job_notes_a_transient_failure_and_clears_it_once_fetched(
    world, http_server, tmp_path
):
    scene = world.scene("S2A_15SYU_20220214_0_L2A")
    record = tmp_path / "2022-01" / "scenes" / f"{scene.id}.json"
    record.parent.mkdir(parents=True)
    ledger = tmp_path / "2022-01" / "failed" / f"{scene.id}.json"
    args = (
        spec_for(world, scene, -1000),
        read_aoi(world.aoi_gpkg),
        tmp_path / "s.tif",
        record,
        ledger,
        FAST,
        tmp_path / "outage.json",
    )
    http_server.go_down()
    try:
        with pytest.raises(SceneUnavailable):
            fetch_scene_job(*args)
    finally:
        http_server.come_up()
    assert not record.exists()
    noted = json.loads(ledger.read_text())
    assert (
        noted["id"] == scene.id
        and noted["kind"] == "transient"
        and "Connection reset" in noted["reason"]
    )
    fetch_scene_job(*args)
    assert json.loads(record.read_text())["status"] == "ok" and not ledger.exists()
