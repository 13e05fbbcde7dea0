"""STAC search against `rustac serve` on 127.0.0.1: manifests, dedup, collections, errors."""

from __future__ import annotations

import json

import pytest

from s2basemap.aoi import read_aoi
from s2basemap.periods import Period
from s2basemap.search import SearchError, deduplicate, run_search
from testworld.build import C1_COLLECTION

ASSETS = {b: b for b in ("blue", "green", "red", "nir", "scl")}
MONTHS = {
    "2022-01": ("2022-01-01", "2022-01-31"),
    "2022-02": ("2022-02-01", "2022-02-28"),
    "2022-03": ("2022-03-01", "2022-03-31"),
}


def search(world, tmp_path, month="2022-01", aoi=None, **stac):
    settings = {
        "url": world.stac_url,
        "collection": "sentinel-2-l2a",
        "timeout_seconds": 10,
        "assets": ASSETS,
        "max_cloud_cover": None,
    } | stac
    start, end = MONTHS[month]
    path = tmp_path / f"{month}.json"
    period = Period.from_bounds(month, {"start": start, "end": end})
    manifest = run_search(read_aoi(aoi or world.aoi_gpkg), period, settings, path)
    assert json.loads(path.read_text()) == manifest  # what was written is what was returned
    return manifest


def test_manifest_records_every_scene_once(world, tmp_path):
    manifest = search(world, tmp_path)
    ids = [s["id"] for s in manifest["scenes"]]
    assert sorted(ids) == [s.id for s in world.newest("2022-01")]
    assert "S2B_15SYU_20220115_1_L2A" in ids and "S2B_15SYU_20220115_0_L2A" not in ids
    assert manifest["duplicates_removed"] == [
        {
            "id": "S2B_15SYU_20220115_0_L2A",
            "reason": "duplicate of S2B_15SYU_20220115_1_L2A (older)",
        }
    ]
    assert manifest["status"] == "ok" and manifest["period"] == "2022-01"
    for record in manifest["scenes"]:
        scene = world.scene(record["id"])
        assert record["tile"] == scene.tile
        assert record["crs"] == f"EPSG:{scene.epsg}"
        assert record["datetime"].startswith(scene.spec.date)
        assert record["processing_baseline"] == scene.spec.baseline
        assert record["assets"] == {b: world.url(scene.path(b)) for b in ASSETS}
        # Earth Search has no sat:relative_orbit: it comes from the product URI's R###
        assert record["relative_orbit"] == scene.spec.orbit
        assert record["datatake_id"] == scene.spec.datatake_id()
        # the metadata decides only before 04.00 or where the flag says Element 84 removed
        # the offset; what it decides is the world's truth
        decided = scene.spec.baseline < "04.00" or scene.spec.flag is True
        assert record["offset"]["decided"] == decided, record["offset"]
        if decided:
            assert record["offset"]["dn"] == (-1000 if scene.spec.data_offset else 0)


def test_c1_collection_works(world, tmp_path):
    manifest = search(world, tmp_path, "2022-02", collection=C1_COLLECTION)
    ids = sorted(s["id"] for s in manifest["scenes"])
    assert ids == [s.id for s in world.newest("2022-02", world.c1_scenes)]
    assert {s["tile"] for s in manifest["scenes"]} == {"15SYU", "16SBU"}
    assert all(s["crs"] in ("EPSG:32615", "EPSG:32616") for s in manifest["scenes"])


def test_cloud_cover_filter_is_recorded(world, tmp_path):
    everything = search(world, tmp_path, "2022-02")
    covers = sorted(s["cloud_cover"] for s in everything["scenes"])
    limit = covers[len(covers) // 2]
    manifest = search(world, tmp_path, "2022-02", max_cloud_cover=limit)
    assert all(s["cloud_cover"] <= limit for s in manifest["scenes"])
    dropped = {e["id"] for e in manifest["excluded"]}
    assert dropped == {s["id"] for s in everything["scenes"] if s["cloud_cover"] > limit}
    assert dropped


def test_multipolygon_aoi_drops_items_touching_only_the_hull(world, tmp_path):
    # the two parts sit over different tiles; the convex hull touches both, the parts too
    manifest = search(world, tmp_path, aoi=world.aoi_multi_geojson)
    assert {s["tile"] for s in manifest["scenes"]} == {"15SYU", "16SBU"}


def test_month_without_scenes_is_an_outcome(world, tmp_path):
    manifest = search(world, tmp_path, "2022-03")
    assert manifest["status"] == "no_scenes" and manifest["scenes"] == []


def test_missing_asset_excludes_the_item_with_its_reason(world, tmp_path):
    manifest = search(world, tmp_path, assets=ASSETS | {"scl": "scene_class"})
    assert manifest["status"] == "no_scenes"
    assert all("missing scl (asset 'scene_class')" in e["reason"] for e in manifest["excluded"])


def test_unreachable_api_is_a_clear_error(world, tmp_path):
    with pytest.raises(SearchError, match="127.0.0.1:9"):
        search(world, tmp_path, url="http://127.0.0.1:9/v1")


def test_dedup_keeps_newest_by_baseline_then_update():
    def scene(id, baseline, updated):
        return {
            "id": id,
            "tile": "15SVU",
            "datetime": "2025-11-03T16:54:19Z",
            "relative_orbit": 12,
            "processing_baseline": baseline,
            "updated": updated,
            "assets": {"red": f"https://example.com/{id}/B04.tif"},
        }

    kept, removed, excluded = deduplicate(
        [
            scene("a_0", "05.11", "2025-11-04"),
            scene("a_1", "05.11", "2025-11-05"),
            scene("old", "04.00", "2026-01-01"),
        ]
    )
    assert [s["id"] for s in kept] == ["a_1"]
    assert {r["id"] for r in removed} == {"a_0", "old"} and excluded == []


def test_each_source_tells_its_own_acquisitions_apart():
    from s2basemap.sources import SOURCES

    def scene(id, tile, when, baseline="05.10", updated=None, orbit=12):
        return {
            "id": id,
            "tile": tile,
            "datetime": when,
            "relative_orbit": orbit,
            "processing_baseline": baseline,
            "updated": updated,
            "assets": {"red": f"https://example.com/{id}/B04.tif"},
        }

    # Collection 1 ids name the acquisition to the second: two passes on one day stay two
    c1 = [
        scene("S2B_T15SVU_20251103T165419_L2A", "15SVU", "2025-11-03T16:54:19Z"),
        scene("S2C_T15SVU_20251103T170301_L2A", "15SVU", "2025-11-03T17:03:01Z", orbit=69),
    ]
    kept, removed, _ = deduplicate(c1, SOURCES["earth-search-c1"])
    assert len(kept) == 2 and removed == []
    # Planetary Computer: one acquisition processed twice; the highest baseline wins,
    # then the newest processing time (the id's last part)
    pc = [
        scene(
            "S2A_MSIL2A_20220128T163551_R083_T15SYU_20220129T000000",
            "15SYU",
            "2022-01-28T16:35:51Z",
            "04.00",
        ),
        scene(
            "S2A_MSIL2A_20220128T163551_R083_T15SYU_20230405T120000",
            "15SYU",
            "2022-01-28T16:35:51Z",
            "04.00",
        ),
        scene(
            "S2A_MSIL2A_20220128T163551_R083_T15SYU_20220130T000000",
            "15SYU",
            "2022-01-28T16:35:51Z",
            "03.01",
        ),
        scene(
            "S2A_MSIL2A_20220128T163551_R083_T16SBU_20220129T000000",
            "16SBU",
            "2022-01-28T16:35:51Z",
            "04.00",
        ),
    ]
    kept, removed, _ = deduplicate(pc, SOURCES["planetary-computer"])
    assert sorted(s["id"] for s in kept) == [pc[1]["id"], pc[3]["id"]]
    assert {r["id"] for r in removed} == {pc[0]["id"], pc[2]["id"]}
    assert all(r["reason"] == f"duplicate of {pc[1]['id']} (older)" for r in removed)


def test_the_manifest_names_its_source(world, tmp_path):
    manifest = search(
        world, tmp_path, "2022-02", collection=C1_COLLECTION, source="earth-search-c1"
    )
    assert manifest["source"] == {
        "name": "earth-search-c1",
        "url": world.stac_url,
        "collection": C1_COLLECTION,
    }
    assert search(world, tmp_path, "2022-02")["source"]["name"] == "earth-search-l2a"


def test_an_empty_month_names_the_sibling_collection_that_has_items(world, tmp_path):
    from s2basemap.notify import month_message

    manifest = search(
        world, tmp_path, "2022-01", collection=C1_COLLECTION, source="earth-search-c1"
    )
    assert manifest["status"] == "no_scenes"  # Collection 1 has nothing that month, l2a has
    l2a = [s for s in world.scenes if s.month == "2022-01"]
    assert manifest["source"]["elsewhere"] == [
        {
            "source": "earth-search-l2a",
            "collection": "sentinel-2-l2a",
            "items": len(l2a),
            "at_least": False,
        }
    ]
    message = month_message(
        {
            "period": {"label": "2022-01"},
            "status": "no_scenes",
            "left_out": [],
            "source": manifest["source"],
        },
        "results/2022-01",
    )
    assert message == (
        f":warning: 2022-01: no mosaic (no scenes); sentinel-2-l2a has {len(l2a)} items "
        "for this period (stac.source: earth-search-l2a)"
    )
    # a month empty everywhere names nothing
    assert (
        search(world, tmp_path, "2022-03", source="earth-search-l2a")["source"]["elsewhere"] == []
    )


def jp2_scene(id, day, baseline, updated, archive: bool):
    """An Earth Search l2a scene record; `archive`: its bands still in the requester-pays
    JP2 archive, as items published before their COG conversion have them."""
    bands = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}
    copy = id.split("_")[3]
    if archive:
        hrefs = {
            b: f"s3://sentinel-s2-l2a/tiles/35/U/NT/2019/9/{day}/{copy}/R10m/{k}.jp2"
            for b, k in bands.items()
        }
    else:
        base = f"https://sentinel-cogs.s3.us-west-2.amazonaws.com/sentinel-s2-l2a-cogs/{id}"
        hrefs = {b: f"{base}/{k}.tif" for b, k in bands.items()}
    return {
        "id": id,
        "tile": "35UNT",
        "datetime": f"2019-09-{day:02d}T09:30:21Z",
        "relative_orbit": 36,
        "processing_baseline": baseline,
        "updated": updated,
        "assets": hrefs,
    }


def test_an_unreadable_newer_copy_loses_to_the_readable_older_one():
    # the real case: S2B_35UNT_20190914_1_L2A (05.00, JP2 hrefs) beside _0 (02.13)
    readable = jp2_scene("S2B_35UNT_20190914_0_L2A", 14, "02.13", "2019-09-15", archive=False)
    newer = jp2_scene("S2B_35UNT_20190914_1_L2A", 14, "05.00", "2023-01-01", archive=True)
    kept, removed, excluded = deduplicate([newer, readable])
    assert [s["id"] for s in kept] == [readable["id"]] and excluded == []
    assert removed == [
        {
            "id": newer["id"],
            "reason": f"unreadable copy ({newer['assets']['blue']} cannot be read anonymously "
            f"over HTTP(S)); the readable copy {readable['id']} is kept",
        }
    ]


def test_an_acquisition_with_no_readable_copy_is_excluded_with_its_reason():
    only = jp2_scene("S2B_35UNT_20190924_0_L2A", 24, "05.00", "2023-01-01", archive=True)
    other = jp2_scene("S2A_35UNT_20190919_0_L2A", 19, "02.13", "2019-09-20", archive=False)
    kept, removed, excluded = deduplicate([only, other])
    assert [s["id"] for s in kept] == [other["id"]] and removed == []
    assert excluded == [
        {
            "id": only["id"],
            "reason": f"no readable copy of this acquisition: {only['assets']['blue']} cannot "
            "be read anonymously over HTTP(S) (an item published before its COGs?)",
        }
    ]
    # an https href to the JP2 archive is no COG either
    https_jp2 = only | {"assets": {"red": "https://example.com/T35UNT_B04.jp2"}}
    assert deduplicate([https_jp2])[2][0]["id"] == only["id"]
