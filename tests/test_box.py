"""The box benchmark (tests/benchmarks/box.py) stays runnable: a small month through every
stage, its figures checked against the world's own files."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import box
import boxworld

SCL_INVALID = [1, 3, 8, 9, 10, 11]
SLOW_GBPS = 0.05


@pytest.fixture(scope="module")
def small_month(tmp_path_factory):
    work = tmp_path_factory.mktemp("box")
    argv = ["--tiles", "2", "--dates", "2", "--edge", "1098", "--work", str(work), "--unfused"]
    saved = dict(os.environ)  # the benchmark points numba's cache and the mask socket at `work`
    try:
        results = box.main([*argv, "--gbps", "0", str(SLOW_GBPS), "--refetch", "2", "--keep"])
    finally:
        os.environ.clear()
        os.environ.update(saved)
    return work, results


def test_every_stage_runs_and_is_measured_and_predicted(small_month):
    _, results = small_month
    full, refetch = results["runs"]
    assert list(full["stages"]) == ["fetch", "mask", "composite unfused", "composite", "products"]
    for name, figures in full["stages"].items():
        assert figures["wall_s"] > 0 and figures["cpu_s"] > 0, name
        assert full["plan"][box.PLAN_STAGE[name]]["seconds"] > 0, name
    assert full["stages"]["fetch"]["jobs"] == 4 and full["stages"]["mask"]["jobs"] == 4
    assert full["stages"]["mask"]["inference_s"] > 0  # through the shared model process
    assert list(refetch["stages"]) == ["fetch"] and refetch["stages"]["fetch"]["jobs"] == 2


def test_fetch_reads_every_full_resolution_tile_and_little_else(small_month):
    work, results = small_month
    world = work / "world"
    needed = sum(
        boxworld.full_resolution_bytes(world / tile[0] / f"{band}.tif")
        for tile in boxworld.TILES[:2]
        for band in boxworld.BANDS
    ) * 2 + sum(  # two dates share the reflectance files
        boxworld.full_resolution_bytes(path) for path in world.glob("*/scl_*.tif")
    )
    total = sum(p.stat().st_size for p in world.glob("*/*.tif"))
    read = results["runs"][0]["stages"]["fetch"]["bytes_read"]
    assert needed <= read <= 2 * total


def test_the_cap_holds_the_fetch_to_its_bandwidth(small_month):
    _, results = small_month
    fetch = results["runs"][1]["stages"]["fetch"]
    # the pacer sends no faster than the cap: a lower bound, whatever the machine's load
    assert fetch["wall_s"] >= 0.99 * fetch["bytes_read"] * 8 / (SLOW_GBPS * 1e9) - 0.1


def test_masks_carry_each_dates_own_clouds(small_month):
    work, _ = small_month
    masks = work / "run-0gbps" / "masks"
    tile = boxworld.TILES[0][0]
    bits = []
    for date in range(2):
        with rasterio.open(work / "world" / tile / f"scl_{date:02d}.tif") as src:
            scl = src.read(1)
        (mask_path,) = masks.glob(f"*T{tile}_*{1 + date * 14:02d}T*.tif")
        with rasterio.open(mask_path) as src:
            mask = src.read(1)
        # SCL at 20 m, the mask at 10 m: every SCL pixel is 2 x 2 mask pixels
        expected = np.isin(scl, SCL_INVALID).repeat(2, axis=0).repeat(2, axis=1)
        np.testing.assert_array_equal((mask & 2) > 0, expected)
        assert 0.3 < expected.mean() < 0.5  # clouds and shadows: about 40 % of the pixels
        bits.append(expected)
    assert not np.array_equal(*bits)


def test_fusing_acquisitions_changes_nothing_where_their_tiles_do_not_overlap(small_month):
    """Each date is one datatake over both tiles, but at this reduced edge (1098 px) the
    tiles lie apart: one observation per acquisition is then every scene's own, and the
    fused columns equal the unfused ones band for band."""
    work, _ = small_month
    run = work / "run-0gbps"
    unfused = sorted((run / "columns-unfused").glob("*.tif"))
    assert [p.name for p in unfused] == [p.name for p in sorted((run / "columns").glob("*.tif"))]
    most = 0
    for path in unfused:
        with rasterio.open(path) as before, rasterio.open(run / "columns" / path.name) as after:
            old, new = before.read(), after.read()
        np.testing.assert_array_equal(new, old)
        most = max(most, int(old[4].max()))
    assert most == 2  # both dates seen somewhere: the comparison has data


def test_concurrency_follows_the_profile():
    assert box.concurrency(16, 1, box.NETWORK_SLOTS) == (10, 1)
    assert box.concurrency(16, box.MASK_THREADS, box.GPU_SLOTS) == (8, 2)
    assert box.concurrency(16, box.COMPOSITE_THREADS, box.GPU_SLOTS) == (8, 2)
    assert box.concurrency(2, box.COMPOSITE_THREADS, box.GPU_SLOTS) == (1, 2)
    assert box.concurrency(2, 4, box.GPU_SLOTS) == (1, 2)  # threads capped at the cores


def test_the_plan_and_the_benchmark_take_the_rules_threads_and_the_profiles_budgets():
    import re

    import yaml

    repo = BENCHMARKS.parents[1]
    rules = (repo / "workflow" / "rules" / "composite.smk").read_text()
    composite = re.search(r"rule composite_column:.*?threads: (\d+)", rules, re.DOTALL)
    assert int(composite[1]) == box.COMPOSITE_THREADS
    mask = re.search(
        r"rule mask_scene:.*?threads: (\d+)",
        (repo / "workflow" / "rules" / "mask.smk").read_text(),
        re.DOTALL,
    )
    assert int(mask[1]) == box.MASK_THREADS
    profile = yaml.safe_load((repo / "profiles" / "vast" / "config.yaml").read_text())
    assert profile["resources"] == {"gpu_slots": box.GPU_SLOTS, "network": box.NETWORK_SLOTS}


def test_a_recorded_month_is_predicted_again_from_costs_measured_later(small_month, capsys):
    """--replan with --costs: a recorded month against costs measured afterwards."""
    work, results = small_month
    recorded = work / "month.json"
    recorded.write_text(json.dumps(results))
    fetch_cost = box.plan_costs(20, results["gpu"])["fetch_cpu_s_per_mpx"]

    def fetch_plan(per_mpx: float) -> list[str]:
        costs = work / "costs.json"
        costs.write_text(json.dumps({"job_start_s": 0, "fetch_cpu_s_per_mpx": per_mpx}))
        capsys.readouterr()
        box.main(["--edge", "1098", "--replan", str(recorded), "--costs", str(costs)])
        rows = [line.split() for line in capsys.readouterr().out.splitlines()]
        return next(row for row in rows if row[:1] == ["fetch"])

    once, twice = fetch_plan(fetch_cost), fetch_plan(2 * fetch_cost)
    measured = results["runs"][0]["stages"]["fetch"]
    assert once[1:3] == [f"{measured['wall_s']:.1f}", f"{measured['cpu_s']:.1f}"]
    # the uncapped fetch is bound by its CPU: twice the cost per megapixel, twice the time
    assert once[8] == "(CPU)" and twice[8] == "(CPU)"
    assert float(twice[7]) == pytest.approx(2 * float(once[7]), rel=0.02, abs=0.1)
