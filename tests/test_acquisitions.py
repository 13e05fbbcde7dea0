"""s2basemap.acquisitions and s2basemap.fusion: which scenes form one acquisition, where
their tiles are, and which one supplies each pixel."""

from __future__ import annotations

import numpy as np
import pytest
from affine import Affine
from pyproj import Transformer

from s2basemap.acquisitions import (
    acquisition_of,
    centre_in,
    platform_of,
    scene_facts,
    tile_extent,
)
from s2basemap.composite import SceneInput
from s2basemap.fusion import group, squared_distances, winners
from s2basemap.masktags import NODATA, OUTSIDE, SCL_INVALID


def test_the_datatake_names_the_acquisition_without_its_baseline():
    record = {
        "id": "S2A_T38WMA_20240419T090557_L2A",
        "datatake_id": "GS2A_20240419T090601_046093_N05.10",
    }
    assert acquisition_of(record) == "GS2A_20240419T090601_046093"
    reprocessed = record | {"datatake_id": "GS2A_20240419T090601_046093_N05.11"}
    assert acquisition_of(reprocessed) == acquisition_of(record)


def test_without_a_datatake_platform_orbit_and_utc_day_name_it():
    record = {
        "id": "S2B_15SYU_20220115_0_L2A",
        "datetime": "2022-01-15T16:54:12Z",
        "relative_orbit": 83,
    }
    assert acquisition_of(record) == "S2B_2022-01-15_R083"
    other_tile = record | {"id": "S2B_16SBU_20220115_0_L2A", "datetime": "2022-01-15T16:54:15Z"}
    assert acquisition_of(other_tile) == acquisition_of(record)
    assert acquisition_of(record | {"relative_orbit": 40}) != acquisition_of(record)
    # a Planetary Computer id names no platform first; the record's platform does
    pc = {"id": "X_MSIL2A_20220115", "datetime": "2022-01-15T16:54Z", "relative_orbit": 83}
    assert acquisition_of(pc | {"platform": "S2B"}) == "S2B_2022-01-15_R083"
    assert acquisition_of(pc) == pc["id"]  # nothing to tell: a scene of its own


def test_platform_from_the_property_or_the_id():
    assert platform_of({"platform": "sentinel-2c"}, "x") == "S2C"
    assert platform_of({}, "S2A_T38WMA_20240419T090557_L2A") == "S2A"
    assert platform_of({"platform": "landsat-8"}, "LC08_x") is None


def test_the_tile_extent_comes_from_the_10_m_assets_or_proj_bbox():
    item = {
        "assets": {
            "scl": {"proj:transform": [20, 0, 600000, 0, -20, 3900000], "proj:shape": [5490, 5490]},
            "red": {
                "proj:transform": [10, 0, 600000, 0, -10, 3900000],
                "proj:shape": [10980, 10980],
            },
        }
    }
    assert tile_extent(item, "EPSG:32615") == {
        "crs": "EPSG:32615",
        "bounds": [600000, 3790200, 709800, 3900000],
    }
    bbox = {"properties": {"proj:bbox": [1, 2, 3, 4]}, "assets": {"red": {}}}
    assert tile_extent(bbox, "EPSG:32615")["bounds"] == [1, 2, 3, 4]
    assert tile_extent({"assets": {}}, "EPSG:32615") is None
    assert tile_extent(item, None) is None
    pc = {"assets": {"B04": item["assets"]["red"]}}
    assert tile_extent(pc, "EPSG:32615", ["B04"])["bounds"][0] == 600000


def test_old_manifests_fall_back_to_the_items_bbox():
    record = {
        "id": "S2B_15SYU_20220115_0_L2A",
        "datetime": "2022-01-15T16:54:12Z",
        "datatake_id": "GS2B_20220115T165419_034120_N03.01",
        "bbox": [-91.0, 34.0, -90.0, 35.0],
    }
    facts = scene_facts(record)
    assert facts["acquisition"] == "GS2B_20220115T165419_034120"
    assert facts["extent"] == {"crs": "EPSG:4326", "bounds": record["bbox"]}
    recorded = record | {
        "acquisition": "A",
        "tile_extent": {"crs": "EPSG:32615", "bounds": [0, 0, 2, 2]},
    }
    assert scene_facts(recorded)["acquisition"] == "A"
    assert scene_facts(recorded)["extent"]["bounds"] == [0, 0, 2, 2]


def test_the_centre_is_transformed_into_the_output_crs():
    extent = {"crs": "EPSG:32616", "bounds": [199980, 3790200, 309780, 3900000]}
    x, y = centre_in(extent, "EPSG:5070")
    expected = Transformer.from_crs(32616, 5070, always_xy=True).transform(254880, 3845100)
    assert (x, y) == pytest.approx(expected, abs=1e-6)


def scene(ident, acquisition="", acquired="", day=0):
    return SceneInput(ident, "", "", acquired=acquired, day=day, acquisition=acquisition)


def test_scenes_group_into_acquisitions_in_their_first_scenes_order():
    scenes = [
        scene("S2A_16SBU", "A", "2022-01-05T16:54:15Z", 4),
        scene("S2A_15SYU", "A", "2022-01-05T16:54:12Z", 4),
        scene("S2B_15SYU", "", "2022-01-15T16:54:12Z", 14),  # no acquisition: its own
        scene("S2A_15SZU", "A", "2022-01-05T16:54:18Z", 4),
    ]
    first, second = group(scenes)  # members by scene id: ties go to the first
    assert (first.id, first.scenes, first.acquired) == ("A", (1, 3, 0), "2022-01-05T16:54:15Z")
    assert (second.id, second.scenes, second.day) == ("S2B_15SYU", (2,), 14)


def test_distances_are_the_pixel_centres_to_the_centre_squared():
    transform = Affine(10, 0, 1000, 0, -10, 5000)
    d = squared_distances(transform, 3, 4, (1000.0, 5000.0))
    rows, cols = np.mgrid[0:3, 0:4]
    np.testing.assert_array_equal(d, ((cols + 0.5) * 10) ** 2 + ((rows + 0.5) * 10) ** 2)


def test_the_nearest_tile_with_data_wins_and_ties_go_to_the_first():
    masks = np.array(
        [
            [[0, SCL_INVALID, NODATA, 0]],
            [[0, 0, 0, OUTSIDE]],
            [[OUTSIDE, OUTSIDE, OUTSIDE, OUTSIDE]],
        ],
        dtype=np.uint8,
    )
    distances = np.array([[[4.0, 4.0, 1.0, 9.0]], [[1.0, 5.0, 2.0, 1.0]], [[0.0, 0.0, 0.0, 0.0]]])
    claims = winners(masks, distances)
    # pixel 0: the second is nearer; 1: the first is nearer, cloud and all (its mask
    # decides); 2: the nearer says nodata, so the second; 3: the second is outside
    np.testing.assert_array_equal(claims, [[[0, 1, 0, 1]], [[1, 0, 1, 0]], [[0, 0, 0, 0]]])
    tie = winners(masks[:2, :, :1], np.array([[[2.0]], [[2.0]]]))
    np.testing.assert_array_equal(tie[:, 0, 0], [True, False])
    nobody = winners(np.full((2, 1, 1), OUTSIDE, np.uint8), np.zeros((2, 1, 1)))
    assert not nobody.any()


def test_one_scene_claims_wherever_it_has_data():
    masks = np.array([[[0, SCL_INVALID, NODATA, OUTSIDE]]], dtype=np.uint8)
    np.testing.assert_array_equal(winners(masks, None), [[[True, True, False, False]]])
