"""One acquisition, one observation, end to end, on a world true to acquisitions.

The world (tests/testworld/acquisitions.py) publishes each datatake as one item per MGRS
tile it touches, over two overlapping tiles of zone 15 and one of zone 16; clouds and
swath edges follow the ground, per-tile processing moves reflectance by a few DN and
cloud edges by a pixel. Each month's percentile, pick or medoid mosaic must equal
test_products' reference, which fuses one observation per acquisition and pixel from
the world's files and truth; the count band must be the number of valid acquisitions.
"""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest
import rasterio

from conftest import run_snakemake, world_config
from test_products import (
    PERCENTILE,
    assert_count_within_acquisitions,
    reference_dated,
    reference_mosaic,
    reference_stack,
    scene_layers,
)
from testworld import served_world
from testworld.acquisitions import MONTHS, TILES, build_acquisition_world

TARGET = {"crs": "EPSG:32615", "resolution": 10, "tile_size": 256}


@pytest.fixture(scope="module")
def acquisition_world(tmp_path_factory):
    root = tmp_path_factory.mktemp("acquisition-world")
    with served_world(root, build=build_acquisition_world) as (world, _, _, _):
        yield world


@pytest.fixture(scope="module")
def fused_run(acquisition_world, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("fusion")
    overrides = {
        month: {"composite": {"method": method}}
        for month, method in MONTHS.items()
        if method != "percentile"
    }
    config = world_config(
        acquisition_world,
        months=list(MONTHS),
        target=TARGET,
        composite={"percentile": PERCENTILE},
        overrides=overrides,
    )
    run_snakemake(workdir, config)
    return workdir


def month_products(workdir, month):
    results = workdir / "results" / month
    (stem,) = (
        p for p in results.glob("S2_RGBNIR_*.tif") if not p.stem.endswith(("_count", "_date"))
    )
    with rasterio.open(stem) as src:
        mosaic, crs, transform = src.read(), src.crs, src.transform
    with rasterio.open(stem.with_name(f"{stem.stem}_count.tif")) as src:
        count = src.read(1)
    days = None
    if MONTHS[month] != "percentile":
        with rasterio.open(stem.with_name(f"{stem.stem}_date.tif")) as src:
            days = src.read(1)
    return mosaic, count, days, crs, transform


@pytest.mark.parametrize("month", MONTHS)
def test_each_method_equals_the_one_observation_per_acquisition_reference(
    acquisition_world, fused_run, month
):
    method = MONTHS[month]
    mosaic, count, days, crs, transform = month_products(fused_run, month)
    shape = mosaic.shape[1:]
    if method == "percentile":
        expected, expected_count, ties = reference_mosaic(
            acquisition_world, month, crs, transform, shape
        )
    else:
        expected, expected_count, expected_days, ties = reference_dated(
            acquisition_world, month, crs, transform, shape, method
        )
    print(f"{method} {month}: {int(ties.sum())} tie pixels of {ties.size}")
    assert ties.sum() < 0.002 * ties.size
    # the count band is the number of valid acquisitions, on every pixel but ties
    np.testing.assert_array_equal(count[~ties], expected_count[~ties])
    both = (mosaic > 0).all(axis=0) & (expected > 0).all(axis=0) & ~ties
    share = (mosaic == expected).all(axis=0)[both].mean()
    print(f"{method} {month}: {share:.4%} of {int(both.sum())} pixels exact")
    assert both.sum() > 50_000 and share >= 0.9999
    if days is not None:
        assert (days == expected_days)[both].mean() >= 0.9999
    ref = assert_count_within_acquisitions(acquisition_world, month, count, crs, transform)
    assert (count >= 3).any() and ref.with_data.max() >= 5


def test_the_world_overlaps_as_real_tiles_do(acquisition_world, fused_run):
    """What makes the world a test: a pixel's scenes with data outnumber its
    acquisitions with data on much of the AOI, and one acquisition's tiles agree there
    except for per-tile processing: reflectance a few DN apart, cloud edges a pixel."""
    world, month = acquisition_world, "2023-07"
    _, count, _, crs, transform = month_products(fused_run, month)
    scenes = world.newest(month)
    layers, valid, present, _, _ = scene_layers(world, crs, transform, count.shape, scenes)
    ref = reference_stack(world, month, crs, transform, count.shape, scenes)
    in_aoi = valid.any(axis=0) | (count > 0)
    twice = present.sum(axis=0) > ref.with_data
    print(f"scenes outnumber acquisitions on {twice[in_aoi].mean():.1%} of the AOI")
    assert twice[in_aoi].mean() > 0.15
    # the overlap of the zone-15 neighbours, acquisition by acquisition
    disagree, differences = [], []
    for members in ref.acquisitions:
        tiles = {scenes[i].tile: i for i in members}
        if not {TILES[0].name, TILES[1].name} <= set(tiles):
            continue
        a, b = tiles[TILES[0].name], tiles[TILES[1].name]
        both = present[a] & present[b]
        disagree.append((valid[a] != valid[b])[both].mean())
        clear = both & valid[a] & valid[b]
        differences.append(np.abs(layers[a] - layers[b])[:, clear].mean())
    assert len(disagree) >= 4
    assert 0 < np.mean(disagree) < 0.05, disagree  # edges only
    assert all(2 < d < 40 for d in differences), differences


def test_metadata_lists_the_acquisitions_and_the_item_every_scene(acquisition_world, fused_run):
    month = "2023-07"
    results = fused_run / "results" / month
    metadata = json.loads((results / "metadata.json").read_text())
    scenes = acquisition_world.newest(month)
    acquisitions = metadata["acquisitions"]
    assert len(acquisitions) == 6 and sum(len(a["scenes"]) for a in acquisitions) == len(scenes)
    for acquisition in acquisitions:
        specs = {acquisition_world.scene(s).spec for s in acquisition["scenes"]}
        (spec,) = specs  # one datatake: one spec, every tile of it
        assert acquisition["id"] == spec.datatake_id().removesuffix(f"_N{spec.baseline}")
        assert acquisition["tiles"] == sorted(spec.tiles)
        assert datetime.fromisoformat(acquisition["datetime"]) == min(
            datetime.fromisoformat(acquisition_world.scene(s).datetime)
            for s in acquisition["scenes"]
        )
    statistics = (fused_run / "work" / month / "statistics.tsv").read_text()
    assert "acquisitions used\t6\n" in statistics and f"scenes used\t{len(scenes)}\n" in statistics
    item = json.loads((results / metadata["files"]["stac_item"]).read_text())
    derived = sorted(
        link["href"].rsplit("/", 1)[1] for link in item["links"] if link["rel"] == "derived_from"
    )
    assert derived == sorted(s.id for s in scenes)
