"""The state-scale fixture (for tests/benchmarks/scale.py) has the shape it claims."""

from __future__ import annotations

from shapely import union_all
from statescale import (
    ARKANSAS_OUTLINE,
    BAND_BYTES,
    SCL_BYTES,
    TILE_EDGE,
    acquisition_days,
    area_km2,
    arkansas,
    asset_size,
    item,
    tiles_over,
)


def test_arkansas_has_the_states_size_and_place():
    aoi = arkansas()
    assert aoi.is_valid and ARKANSAS_OUTLINE[0] == ARKANSAS_OUTLINE[-1]
    assert 130_000 < area_km2(aoi) < 146_000  # the state: about 137,700 km2
    assert abs(aoi.centroid.x + 92.4) < 0.3 and abs(aoi.centroid.y - 34.8) < 0.3


def test_tiles_cover_the_state_from_two_utm_zones_and_overlap():
    aoi = arkansas()
    tiles = tiles_over(aoi)
    assert {t.epsg for t in tiles} == {32615, 32616} and 25 <= len(tiles) <= 35
    footprints = [t.footprint_4326() for t in tiles]
    assert union_all(footprints).contains(aoi)
    same_zone = [t for t in tiles if t.epsg == 32615]
    a = next(
        t for t in same_zone if any(u.x0 == t.x0 + 100_000 and u.y0 == t.y0 for u in same_zone)
    )
    assert TILE_EDGE - 100_000 == 9_800  # neighbours overlap by 9.8 km
    assert a.bounds[2] - (a.x0 + 100_000) == 9_800


def test_acquisitions_and_sizes_are_realistic():
    tiles = tiles_over(arkansas())
    counts = [len(acquisition_days(t, 2025, m)) for t in tiles for m in range(1, 13)]
    assert min(counts) == 12 and max(counts) == 15
    sizes = [asset_size(f"/S2A_x_{i}/B04.tif") for i in range(200)]
    assert 0.84 * BAND_BYTES < min(sizes) and max(sizes) < 1.16 * BAND_BYTES
    assert 0.84 * SCL_BYTES < asset_size("/S2A_x/SCL.tif") < 1.16 * SCL_BYTES
    record = item(tiles[0], 2025, 6, 3, "http://127.0.0.1:1")
    assert record["properties"]["s2:processing_baseline"] == "05.11"
    assert record["assets"]["red"]["raster:bands"][0]["offset"] == -0.1
    assert record["assets"]["scl"]["proj:shape"] == [5490, 5490]
