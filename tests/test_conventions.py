"""Offsets as providers really serve them, on dark and on arid land, end to end.

The conventions world (tests/testworld/conventions.py) publishes each case in a month
of its own: Earth Search l2a flagged true (harmonised), flagged false with the offset,
flagged false but harmonised; Collection 1; the Planetary Computer. Every case has a
tile of dark land and one of arid land. Each month's mosaic must equal a numpy
reference that harmonises from the world's truth, and each scene's recorded decision
must be that truth.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from conftest import run_snakemake, world_config
from test_products import PERCENTILE, assert_count_within_acquisitions, reference_mosaic
from testworld import served_world
from testworld.build import C1_COLLECTION, COLLECTION
from testworld.conventions import CASES, LANDS, PC_LIKE_COLLECTION, build_conventions_world

SOURCES = {
    COLLECTION: {"source": "earth-search-l2a"},
    C1_COLLECTION: {"source": "earth-search-c1"},
    PC_LIKE_COLLECTION: {"source": "planetary-computer", "collection": PC_LIKE_COLLECTION},
}
# what settles each case: the metadata where it can tell, the pixels where it cannot
SETTLED_BY = {
    "l2a flagged true": "metadata",
    "l2a flagged false, with the offset": "pixels",
    "l2a flagged false, harmonised": "pixels",
    "Collection 1": "metadata",
    "Planetary Computer": "metadata",
}


@pytest.fixture(scope="module")
def conventions(tmp_path_factory):
    root = tmp_path_factory.mktemp("conventions-world")
    with served_world(root, build=build_conventions_world) as (world, _, _, _):
        yield world


@pytest.fixture(scope="module")
def runs(conventions, tmp_path_factory):
    """One run per collection, each with all of its months: collection -> workdir."""
    workdirs = {}
    for collection, stac in SOURCES.items():
        months = sorted({month for c, month, _, _ in CASES.values() if c == collection})
        workdir = tmp_path_factory.mktemp(collection)
        config = world_config(
            conventions,
            months=months,
            stac={"url": conventions.stac_url} | stac,
            target={"crs": "EPSG:32615", "resolution": 10, "tile_size": 256},
            composite={"percentile": PERCENTILE},
        )
        run_snakemake(workdir, config)
        workdirs[collection] = workdir
    return workdirs


@pytest.mark.parametrize("case", CASES)
def test_each_scene_is_harmonised_as_its_provider_serves_it(conventions, runs, case):
    collection, month, _, _ = CASES[case]
    workdir = runs[collection]
    metadata = workdir / "results" / month / "metadata.json"
    recorded = {s["id"]: s["offset"] for s in json.loads(metadata.read_text())["scenes"]}
    scenes = conventions.cases[case]
    assert sorted(recorded) == sorted(s.id for s in scenes)
    for scene in scenes:
        offset = recorded[scene.id]
        truth = -1000 if scene.spec.data_offset else 0
        land = LANDS[scene.tile]
        assert (offset["dn"], offset["source"]) == (truth, SETTLED_BY[case]), (land, offset)
        assert offset["pixels"]["verdict"] == ("offset" if truth else "no offset"), (land, offset)
        # the evidence is in the record: what the metadata said, and what the pixels showed
        assert offset["metadata"]["rule"] and offset["pixels"]["dark_pixels"] >= 500
        record = json.loads((workdir / "work" / month / "scenes" / f"{scene.id}.json").read_text())
        assert record["offset"] == offset


@pytest.mark.parametrize("case", CASES)
def test_each_cases_mosaic_equals_the_reference_from_the_worlds_truth(conventions, runs, case):
    collection, month, _, _ = CASES[case]
    results = runs[collection] / "results" / month
    (path,) = (p for p in results.glob("*.tif") if not p.stem.endswith("_count"))
    with rasterio.open(path) as src:
        mosaic, crs, transform = src.read(), src.crs, src.transform
    scenes = conventions.cases[case]
    expected, count, ties = reference_mosaic(
        conventions, month, crs, transform, mosaic.shape[1:], scenes
    )
    (count_path,) = results.glob("*_count.tif")
    with rasterio.open(count_path) as src:
        assert_count_within_acquisitions(conventions, month, src.read(1), crs, transform, scenes)
    both = (mosaic > 0).all(axis=0) & (expected > 0).all(axis=0) & ~ties
    exact = (mosaic == expected).all(axis=0) & both
    for land in ("dark", "arid"):
        tile = next(t for t, kind in LANDS.items() if kind == land)
        on_land = both & on_tile(conventions, tile, crs, transform, mosaic.shape[1:])
        share = exact[on_land].mean()
        print(f"{case}, {land} land: {share:.4%} of {on_land.sum()} pixels exact")
        assert on_land.sum() > 10_000 and share >= 0.9999, (land, share)
    assert (count[both] >= 1).all() and (count >= 2).any()


def on_tile(world, tile: str, crs, transform, shape) -> np.ndarray:
    """Output pixels whose centres lie on `tile`'s footprint."""
    from rasterio.warp import transform as warp_points

    tile_crs, (left, bottom, right, top) = world.tile_bounds[tile]
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    x, y = transform * (cols.ravel() + 0.5, rows.ravel() + 0.5)
    tx, ty = (np.asarray(v) for v in warp_points(crs, tile_crs, x, y))
    inside = (tx > left) & (tx < right) & (ty > bottom) & (ty < top)
    return inside.reshape(shape)


def test_the_arid_land_hides_its_offset_from_a_share_over_all_clear_pixels(conventions):
    """What makes the arid tile a test: harmonised, fewer than 5 % of its clear blue
    pixels are below 1000 DN, so the check this project had (more than 5 % of clear blue
    below 1000 means no offset) took its scenes to carry the offset."""
    for scene in conventions.cases["l2a flagged false, harmonised"]:
        with rasterio.open(scene.path("blue")) as src:
            blue = src.read(1)
        with rasterio.open(scene.path("scl")) as src:
            scl = src.read(1).repeat(2, axis=0).repeat(2, axis=1)
        clear = (blue > 0) & np.isin(scl, (2, 4, 5, 6, 7))
        share = (blue[clear] < 1000).mean()
        assert share < 0.05 if LANDS[scene.tile] == "arid" else share > 0.5, (scene.id, share)


def test_readable_copies_win_and_an_acquisition_without_one_is_excluded(conventions, runs):
    """The l2a collection also holds a newer copy of one scene whose bands are still in
    the requester-pays JP2 archive, and an acquisition published only that way: the month
    is made from the readable copy, and the other is left out, with its reason, in the
    manifest and metadata.json."""
    from testworld.conventions import UNREADABLE_ONLY, UNREADABLE_TWIN

    workdir = runs[COLLECTION]
    readable, twin = UNREADABLE_TWIN
    may = json.loads((workdir / "work" / "2023-05" / "manifest.json").read_text())
    assert readable in {s["id"] for s in may["scenes"]}
    (removed,) = (d for d in may["duplicates_removed"] if d["id"] == twin)
    assert removed["reason"].startswith("unreadable copy (s3://sentinel-s2-l2a/tiles/15/S/XV/")
    assert removed["reason"].endswith(f"the readable copy {readable} is kept")
    _, only = UNREADABLE_ONLY
    june = json.loads((workdir / "work" / "2023-06" / "manifest.json").read_text())
    (excluded,) = (e for e in june["excluded"] if e["id"] == only)
    assert excluded["reason"].startswith("no readable copy of this acquisition: s3://")
    for month, scene_id in (("2023-05", twin), ("2023-06", only)):
        metadata = json.loads((workdir / "results" / month / "metadata.json").read_text())
        left_out = {e["id"]: e["reason"] for e in metadata["left_out"]}
        assert "s3://sentinel-s2-l2a/" in left_out[scene_id]
        assert scene_id not in {s["id"] for s in metadata["scenes"]}
