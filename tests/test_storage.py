"""Counting bytes on disk while jobs write."""

from __future__ import annotations

import os

import pytest

from s2basemap.storage import bytes_under


def test_bytes_under_counts_regular_files_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.tif").write_bytes(b"1" * 1000)
    (tmp_path / "y.json").write_bytes(b"2" * 24)
    (tmp_path / "link").symlink_to(tmp_path / "y.json")
    assert bytes_under(tmp_path) == 1024
    assert bytes_under(tmp_path / "missing") == 0


def test_a_file_that_vanishes_while_counting_is_skipped(tmp_path, monkeypatch):
    """The race seen in a real run: a .part file listed, then renamed before its stat."""
    (tmp_path / "scene.tif").write_bytes(b"1" * 500)
    part = tmp_path / ".scene2.tif.abc.part"
    part.write_bytes(b"2" * 700)
    real_lstat = os.lstat

    def rename_first(path, *args, **kwargs):
        if str(path) == str(part) and part.exists():  # the writer finishes just now
            part.rename(tmp_path / "scene2.tif")
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", rename_first)
    assert bytes_under(tmp_path) == 500  # the renamed file was listed under its old name
    assert bytes_under(tmp_path) == 1200  # and is counted once it is found again


def _month(rasters, masks, tiles, outputs):
    return {
        "scene_raster_bytes": rasters,
        "mask_bytes": masks,
        "tile_bytes": tiles,
        "output_bytes": outputs,
    }


def test_months_in_flight_bound_the_peak_to_the_newest_months_intermediates():
    from s2basemap.storage import peak_bytes

    months = {
        "2025-01": _month(100, 2, 4, 5),
        "2025-02": _month(150, 3, 4, 5),
        "2025-03": _month(120, 2, 4, 5),
    }
    products = 3 * 5
    # one month at a time: a month's rasters, masks and tiles beside the tiles of the
    # month before (not yet assembled) and the products of the months before that
    one = max(106, 157 + 4 + 5, 126 + 4 + 10)
    assert peak_bytes(months, False, 1) == (one, products)
    assert peak_bytes(months, False, 1, products=False) == (157 + 4, 0)
    two = max(106, 106 + 157, 157 + 126 + 4 + 5)
    assert peak_bytes(months, False, 2) == (two, products)
    # no limit: every month's intermediates and products at once
    assert peak_bytes(months, False, None) == (106 + 157 + 126 + 15, products)
    # all kept: the peak is the end
    assert peak_bytes(months, True, 1) == (111 + 162 + 131,) * 2
    # a month with little to fetch peaks at its end: its tiles and products
    assert peak_bytes({"m": _month(3, 1, 40, 50)}, False, 1) == (90, 50)
    # products deleted once uploaded: a month's are there from its end until the next
    # month's sweep is under way, never beside the months before's
    uploaded = max(106, 157 + 4 + 5, 126 + 4 + 5)
    assert peak_bytes(months, False, 1, products_kept=False) == (uploaded, 0)
    assert peak_bytes(months, False, 1, products=False, products_kept=False) == (157 + 4, 0)
    # unless the time plan says the month before's are assembled and uploaded (gone)
    # before the sweep's peak: the peak is then the month's own
    timed = {
        "2025-01": months["2025-01"] | {"released_seconds": 600},
        "2025-02": months["2025-02"] | {"sweep_peak_seconds": 900},
    }
    assert peak_bytes(timed, False, 1, products_kept=False)[0] == 157  # its own
    timed["2025-02"]["sweep_peak_seconds"] = 300  # the peak comes first: both counted
    assert peak_bytes(timed, False, 1, products_kept=False)[0] == 157 + 4 + 5
    twelve = {f"2025-{m:02d}": _month(150, 3, 4, 5) for m in range(1, 13)}
    assert (
        peak_bytes(twelve, False, 1, products_kept=False)[0]
        == peak_bytes({"one": _month(150, 3, 4, 5)}, False, 1)[0] + 4 + 5
    )  # the month before's tiles and products


def test_a_results_dir_on_another_disk_is_checked_for_the_products_alone(tmp_path):
    from s2basemap.storage import KERNEL_CACHE_BYTES, DiskSpaceError, build_plan, check_disk

    extra = {"scenes": 3, "unknown_sizes": 0, "network_bytes": 1}
    months = {"2025-01": _month(100, 2, 4, 5) | extra, "2025-02": _month(150, 3, 4, 5) | extra}
    plan = build_plan(months, False, tmp_path / "work", tmp_path / "results", None, 1)
    cache = KERNEL_CACHE_BYTES  # the compiled kernel's cache, under work_dir

    def free(n):  # a free-disk cap of n bytes
        return (n + 0.5) / 1e9

    assert plan["same_filesystem"] and plan["total"]["peak_bytes"] == cache + 166
    assert plan["total"]["work_peak_bytes"] == cache + 161
    check_disk(plan, tmp_path / "work", tmp_path / "results", free(cache + 166))
    with pytest.raises(
        DiskSpaceError, match=rf"needs {(cache + 166) / 1000:.1f} kB at peak in work_dir"
    ):
        check_disk(plan, tmp_path / "work", tmp_path / "results", free(cache + 165))
    # on two filesystems each directory needs only its own part
    plan["same_filesystem"] = False
    check_disk(plan, tmp_path / "work", tmp_path / "results", free(cache + 161))
    with pytest.raises(DiskSpaceError, match=r"only 250.2 kB are free"):
        check_disk(plan, tmp_path / "work", tmp_path / "results", free(cache + 160))


def test_a_west_to_east_sweep_holds_only_the_scenes_around_one_column():
    from s2basemap.grid import scene_columns
    from s2basemap.storage import peak_bytes, sweep_front

    tile_scenes = {
        "0000_0000": ["a", "b"],
        "0001_0001": ["b", "c"],
        "0000_0002": ["c", "d"],
        "0001_0003": ["d"],
    }
    columns = scene_columns(tile_scenes)
    assert columns == {"a": (0, 0), "b": (0, 1), "c": (1, 2), "d": (2, 3)}

    def scene(raster_gb, window_pixels=0):
        # source bytes such that the fetched raster is exactly raster_gb
        return {"source_bytes": raster_gb / 0.95, "aoi_share": 1.0, "window_pixels": window_pixels}

    sizes = {
        "scenes": {
            "a": scene(10),
            "b": scene(20),
            "c": scene(40),
            "d": scene(30, 100),
            "e": scene(5),
        }
    }
    # fetched at their first column: column 0 holds a + b, 1 holds b + c, 2 holds c + d
    # (and its 10 B of mask); e touches no tile and is held throughout
    assert sweep_front(sizes, columns, ahead=0)[0] == pytest.approx(max(30, 60, 70 + 10) + 5)
    # fetched a column ahead: column 1 also holds d
    assert sweep_front(sizes, columns, ahead=1)[0] == pytest.approx(max(30 + 40, 20 + 40 + 40) + 5)
    month = _month(105, 10, 4, 5) | {"sweep_bytes": 85}
    assert peak_bytes({"m": month}, False, 1) == (85 + 4, 5)
    # the column being composited at the peak: the composites west of it are written
    assert sweep_front(sizes, columns, ahead=0) == (pytest.approx(85), 2)
    assert sweep_front(sizes, columns, ahead=1) == (pytest.approx(105), 1)
    month |= {"sweep_tile_bytes": 1}  # a quarter of the month's 4 B of composites
    assert peak_bytes({"m": month}, False, 1) == (max(85 + 1, 4 + 5), 5)


def test_a_month_whose_network_outpaces_its_sweep_holds_all_its_scene_rasters():
    """When the GPU bounds the sweep, the fetches run on ahead of the composites,
    held back only by the cores the masks take first: the plan counts the whole
    month (the timed replay at 10 Gbit/s held less)."""
    from test_timeplan import MONTH  # a state-sized month's work

    from s2basemap.storage import peak_bytes, timed_sweeps
    from s2basemap.timeplan import Machine

    def month():  # the west-to-east band holds 90 of its 180 GB of rasters and masks
        return MONTH | _month(177e9, 3e9, 7e9, 8e9) | {"sweep_bytes": 90e9, "sweep_tile_bytes": 1e9}

    slow, fast = {"m": month()}, {"m": month()}
    timed_sweeps(slow, Machine(16, True, 1.0), uses_ocm=True, products_kept=True)
    timed_sweeps(fast, Machine(16, True, 10.0), uses_ocm=True, products_kept=True)
    # 1 Gbit/s: the network bounds the sweep and the band is what is held
    assert not slow["m"]["fetches_outrun_sweep"] and slow["m"]["sweep_bytes"] == 90e9
    assert peak_bytes(slow, False, 1)[0] == 90e9 + 1e9
    # 10 Gbit/s: the fetches take 3 minutes, the masks' inference 13
    assert fast["m"]["fetches_outrun_sweep"] and fast["m"]["sweep_bytes"] == 180e9
    assert peak_bytes(fast, False, 1)[0] == 180e9 + 1e9
    # without a GPU the cores bound the sweep, and masks and composites take them first
    cpu = {"m": month()}
    timed_sweeps(cpu, Machine(16, False, 10.0), uses_ocm=True, products_kept=True)
    assert not cpu["m"]["fetches_outrun_sweep"] and cpu["m"]["sweep_bytes"] == 90e9


def test_the_plan_gives_each_month_its_swept_peak(tmp_path):
    from s2basemap.storage import KERNEL_CACHE_BYTES, build_plan

    month = _month(105, 10, 4, 5) | {
        "sweep_bytes": 85,
        "scenes": 3,
        "unknown_sizes": 0,
        "network_bytes": 1,
    }
    plan = build_plan({"m": month}, False, tmp_path, tmp_path, None, None)
    assert plan["periods"]["m"]["peak_bytes"] == 85 + 4
    assert plan["periods"]["m"]["work_peak_bytes"] == 85 + 4
    # without a limit on months in flight the run's worst case is every fetch first
    assert plan["total"]["peak_bytes"] == KERNEL_CACHE_BYTES + 105 + 10 + 4 + 5


def test_sizes_come_from_the_server_and_a_missing_file_is_left_to_the_fetch(world, http_server):
    from s2basemap.storage import head_sizes

    scene = world.scene("S2A_15SYU_20220128_0_L2A")
    present, missing = world.url(scene.path("red")), f"{world.base_url}/cogs/does-not-exist/B04.tif"
    assert head_sizes([present, missing]) == {
        present: scene.path("red").stat().st_size,
        missing: None,
    }


def test_sizes_from_a_source_that_does_not_answer_stop_the_plan(world, http_server):
    from s2basemap.storage import SourceUnreachable, head_sizes

    scene = world.scene("S2A_15SYU_20220128_0_L2A")
    hrefs = [world.url(scene.path(band)) for band in ("red", "green")]
    http_server.go_down()
    try:
        with pytest.raises(
            SourceUnreachable, match=r"2 of 2 size requests failed for network reasons"
        ):
            head_sizes(hrefs)
    finally:
        http_server.come_up()
    assert http_server.faults["down"] >= 2


def test_acquisition_pixels_count_an_acquisitions_overlapping_tiles_once():
    """Two tiles of one datatake overlapping by a third of their windows, and a second
    acquisition on one tile: the windows' pixels less the overlap counted twice."""
    from pyproj import CRS, Transformer
    from shapely.geometry import box

    from s2basemap.aoi import AOI
    from s2basemap.storage import acquisition_pixels, scene_window

    to_4326 = Transformer.from_crs(32615, 4326, always_xy=True)
    aoi = AOI(box(500_000, 3_900_000, 503_000, 3_901_000), CRS.from_epsg(32615))

    def scene(ident, datatake, west, east):
        (x0, x1), (y0, y1) = to_4326.transform([west, east], [3_899_000, 3_902_000])
        return {"id": ident, "crs": "EPSG:32615", "bbox": [x0, y0, x1, y1], "datatake_id": datatake}

    scenes = [
        scene("S2A_A", "GS2A_1_N05.11", 500_000, 502_000),
        scene("S2A_B", "GS2A_1_N05.11", 501_000, 503_000),
        scene("S2B_A", "GS2B_2_N05.11", 500_000, 502_000),
    ]
    windows = [scene_window(s, aoi).area / 100 for s in scenes]
    assert windows == pytest.approx([20_000, 20_000, 20_000], rel=0.01)
    # GS2A_1: 2 km + 2 km overlapping by 1 km, so 3 km x 1 km; GS2B_2: 2 km x 1 km
    assert acquisition_pixels({"scenes": scenes}, aoi) == pytest.approx(50_000, rel=0.01)
