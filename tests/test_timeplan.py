"""Time plan: stage seconds from counted work, per machine, against a hand computation
from a cost table of round numbers passed in (the measured costs are the module's, and
the plan's arithmetic is what these tests check)."""

from __future__ import annotations

import copy

import pytest

from s2basemap import timeplan
from s2basemap.config import ConfigError, validate_config
from s2basemap.timeplan import Machine, format_time_plan, time_plan

# One month shaped like a state: 400 scenes whose AOI windows total 30 gigapixels,
# 236 GB to read and 400 output tiles of 2048 px in 22 columns (composite jobs), the
# largest of 25 tiles.
MONTH = {
    "scenes": 400,
    "window_pixels": 30e9,
    "network_bytes": 236e9,
    "tiles": 400,
    "composite_jobs": 22,
    "largest_column_tiles": 25,
    "output_pixels": 400 * 2048**2,
}
BOX = Machine(cores=16, gpu=True, network_gbps=1.0)
CPU_BOX = Machine(cores=16, gpu=False, network_gbps=1.0)
# Round numbers, none of them measured: the seconds below follow from them by hand.
COSTS = {
    "job_start_s": 1.0,
    "composite_job_start_s": 2.0,
    "numba_compile_s": 3.0,
    "snakemake_start_s": 4.0,
    "fetch_cpu_s_per_mpx": 0.05,
    "mask_cpu_s_per_mpx": 0.02,
    "ocm_cpu_s_per_mpx": 1.0,
    "ocm_cpu_threads_busy": 0.5,
    "ocm_host_cpu_s_per_mpx": 0.01,
    "gpu_ocm_s_per_mpx": 0.02,
    "composite_cpu_s_per_scene_mpx": 0.1,
    "composite_cores_busy_per_job": 1.5,
    "outputs_wall_s_per_mpx": 0.1,
    "scheduler_s_per_job": 0.01,
    "scheduler_s_per_job_squared": 1e-5,
}
# MONTH under COSTS, on 16 cores, by hand: 30,000 Mpx of windows, 1,677.7216 Mpx of output
FETCH_CPU = (400 * 1.0 + 30_000 * 0.05) / 10  # 190 s: 10 fetches at once (network slots)
FETCH_NETWORK = 236e9 * 8 / 1e9  # 1,888 s at 1 Gbit/s
# 8 column jobs at once (GPU slots) of 2 threads, each keeping 1.5 cores busy: 12 cores
COMPOSITE = (22 * 2.0 + 30_000 * 0.1) / 12  # 253.7 s
# the largest column (25 of the 400 tiles) on the 1.5 cores its job keeps busy
LAST_COLUMN = (2.0 + 30_000 * 0.1 * 25 / 400) / 1.5  # 126.3 s
OUTPUTS = 3 * 1.0 + 400 * 2048**2 / 1e6 * 0.1  # 170.8 s: summary, mosaic and metadata jobs
JOBS = 2 * 400 + 22 + 3  # fetch and mask per scene, composite per column, 3 per month
SNAKEMAKE = 4.0 + 3.0 + 0.01 * JOBS + 1e-5 * JOBS**2  # 22.1 s


def test_gpu_box_month_is_its_network_bound_sweep_then_the_last_column_and_outputs():
    plan = time_plan({"2025-06": dict(MONTH)}, BOX, uses_ocm=True, costs=COSTS)
    month = plan["periods"]["2025-06"]
    stages = month["stages"]
    # 236 GB at 1 Gbit/s is 31 min; the fetches' CPU is 3 min of it
    assert stages["fetch"] == {
        "seconds": pytest.approx(FETCH_NETWORK, abs=0.05),
        "bound_by": "network",
    }
    # the masks' CPU on 16 cores (81 s) is less than the GPU's inference
    mask_cpu = (400 * 1.0 + 30_000 * (0.02 + 0.01)) / 16
    assert stages["mask"] == {"seconds": pytest.approx(30_000 * 0.02, abs=0.05), "bound_by": "GPU"}
    assert stages["composite"] == {"seconds": pytest.approx(COMPOSITE, abs=0.05), "bound_by": "CPU"}
    assert stages["outputs"] == {"seconds": pytest.approx(OUTPUTS, abs=0.05), "bound_by": "serial"}
    # composites run during the sweep, on the cores the fetches and masks leave; only
    # the largest column's job follows it
    assert month["last_columns_seconds"] == pytest.approx(LAST_COLUMN, abs=0.05)
    cores = FETCH_CPU + mask_cpu + COMPOSITE - LAST_COLUMN  # 399 s: less than the network's
    assert cores < 30_000 * 0.02 < FETCH_NETWORK
    assert month["sweep_seconds"] == pytest.approx(FETCH_NETWORK, abs=0.05)
    assert month["sweep_bound_by"] == "network"
    assert month["total_seconds"] == pytest.approx(FETCH_NETWORK + LAST_COLUMN + OUTPUTS, abs=0.1)
    assert plan["snakemake"] == {"jobs": 825, "seconds": pytest.approx(SNAKEMAKE, abs=0.05)}
    assert plan["total_seconds"] == pytest.approx(
        FETCH_NETWORK + LAST_COLUMN + OUTPUTS + SNAKEMAKE, abs=0.2
    )
    assert plan["bound_by"] == {"stage": "fetch", "resource": "network"}
    assert "cost" not in plan


def test_without_a_gpu_inference_runs_on_the_cores_and_bounds_the_month():
    plan = time_plan({"2025-06": dict(MONTH)}, CPU_BOX, uses_ocm=True, costs=COSTS)
    month = plan["periods"]["2025-06"]
    # inference keeps only half of its threads busy: 8 of the 16 cores
    mask = (400 * 1.0 + 30_000 * (0.02 + 1.0)) / (16 * 0.5)  # 3,875 s
    assert month["stages"]["mask"] == {"seconds": pytest.approx(mask, abs=0.05), "bound_by": "CPU"}
    assert plan["bound_by"] == {"stage": "mask", "resource": "CPU"}
    # the cores are the sweep's busiest resource: fetches, masks and all but the last
    # column's composites share them, one after another in effect
    assert month["sweep_seconds"] == pytest.approx(
        FETCH_CPU + mask + COMPOSITE - LAST_COLUMN, abs=0.1
    )
    assert month["sweep_bound_by"] == "CPU"
    assert month["total_seconds"] == pytest.approx(FETCH_CPU + mask + COMPOSITE + OUTPUTS, abs=0.2)
    # SCL-only masks need no model at all: their CPU on every core
    scl = time_plan({"2025-06": dict(MONTH)}, CPU_BOX, uses_ocm=False, costs=COSTS)
    assert scl["stages"]["mask"] == pytest.approx((400 * 1.0 + 30_000 * 0.02) / 16, abs=0.05)


def test_the_box_costs_replace_the_vms_only_where_measured_there():
    box, vm = timeplan.costs_for(gpu=True), timeplan.costs_for(gpu=False)
    assert vm == timeplan.DEV_VM_COSTS
    assert set(timeplan.BOX_COSTS) <= set(vm)
    for key in vm:
        assert box[key] == timeplan.BOX_COSTS.get(key, vm[key]), key
    assert set(timeplan.BOX_COSTS).isdisjoint(timeplan.BOX_NOT_YET_MEASURED)
    # inference on the CPU: a GPU box runs it on the GPU
    on_the_cpu = {"ocm_cpu_s_per_mpx", "ocm_cpu_threads_busy"}
    assert set(timeplan.BOX_COSTS) | set(timeplan.BOX_NOT_YET_MEASURED) | on_the_cpu == set(vm)
    # a plan without costs uses the machine's
    for machine in (BOX, CPU_BOX):
        assert time_plan({"m": dict(MONTH)}, machine, uses_ocm=True) == time_plan(
            {"m": dict(MONTH)}, machine, uses_ocm=True, costs=timeplan.costs_for(machine.gpu)
        )


def test_composite_cores_follow_jobs_threads_and_the_measured_busy_cores():
    costs = {"composite_cores_busy_per_job": 3.0}
    assert timeplan.composite_cores(22, 16, costs) == 16  # 8 jobs (gpu_slots) of 2 threads
    assert timeplan.composite_cores(2, 16, costs) == 4  # only 2 columns to composite
    assert timeplan.composite_cores(22, 48, costs) == 16  # 8 jobs at most
    busy = {"composite_cores_busy_per_job": 1.2}
    assert timeplan.composite_cores(22, 2, busy) == 1.2  # one job of 2 threads


def test_months_add_up_and_a_price_gives_the_cost():
    priced = Machine(cores=16, gpu=True, network_gbps=1.0, hourly_price=1.5)
    two = time_plan({"2025-06": dict(MONTH), "2025-07": dict(MONTH)}, priced, True, COSTS)
    month = FETCH_NETWORK + LAST_COLUMN + OUTPUTS
    # the run's start is paid once; scheduling grows faster than the jobs
    jobs = 2 * JOBS
    snakemake = 4.0 + 3.0 + 0.01 * jobs + 1e-5 * jobs**2  # 50.7 s, more than 2 x 22.1 - 7
    assert two["snakemake"] == {"jobs": jobs, "seconds": pytest.approx(snakemake, abs=0.05)}
    assert two["stages"]["sweep"] == pytest.approx(2 * FETCH_NETWORK, abs=0.1)
    assert two["total_seconds"] == pytest.approx(2 * month + snakemake, abs=0.3)
    assert two["cost"] == pytest.approx((2 * month + snakemake) / 3600 * 1.5, abs=0.006)
    report = format_time_plan(two)
    assert "16 cores, a GPU, 1 Gbit/s" in report
    assert f"= {two['cost']:.2f}" in report and "bound by: fetch (network)" in report
    assert "Snakemake's start-up and scheduling of 1650 jobs" in report


def test_faster_network_shortens_only_what_the_network_bounded():
    fast = time_plan({"m": dict(MONTH)}, Machine(16, True, 10.0), True, COSTS)
    slow = time_plan({"m": dict(MONTH)}, BOX, True, COSTS)
    # at 10 Gbit/s the network takes 189 s, the fetches' CPU 190 s
    assert fast["periods"]["m"]["stages"]["fetch"] == {
        "seconds": pytest.approx(FETCH_CPU, abs=0.05),
        "bound_by": "CPU",
    }
    assert fast["stages"]["composite"] == slow["stages"]["composite"]
    # the masks' inference then bounds the sweep
    assert fast["periods"]["m"]["sweep_bound_by"] == "GPU"
    assert fast["periods"]["m"]["sweep_seconds"] == pytest.approx(30_000 * 0.02, abs=0.05)


def test_a_month_of_one_column_composites_it_all_after_the_sweep():
    one_column = dict(MONTH, composite_jobs=1, largest_column_tiles=400)
    month = time_plan({"m": one_column}, BOX, True, COSTS)["periods"]["m"]
    # one job, on the 1.5 cores it keeps busy
    composite = (2.0 + 30_000 * 0.1) / 1.5  # 2,001 s
    assert month["stages"]["composite"]["seconds"] == pytest.approx(composite, abs=0.05)
    assert month["last_columns_seconds"] == pytest.approx(composite, abs=0.05)
    assert month["sweep_seconds"] == pytest.approx(FETCH_NETWORK, abs=0.05)
    assert month["total_seconds"] == pytest.approx(FETCH_NETWORK + composite + OUTPUTS, abs=0.2)


def test_a_month_without_scenes_takes_only_the_runs_start():
    empty = {
        "scenes": 0,
        "window_pixels": 0,
        "network_bytes": 0,
        "tiles": 0,
        "composite_jobs": 0,
        "largest_column_tiles": 0,
        "output_pixels": 0,
    }
    plan = time_plan({"m": empty}, BOX, uses_ocm=True, costs=COSTS)
    assert plan["total_seconds"] == pytest.approx(4.0 + 3.0, abs=0.05)
    assert plan["snakemake"]["jobs"] == 0


def test_machine_from_config_reads_this_machine_for_null_and_auto(monkeypatch):
    monkeypatch.setattr(timeplan, "has_gpu", lambda: False)
    monkeypatch.setattr(timeplan.os, "cpu_count", lambda: 6)
    assert Machine.from_config({"cores": None, "gpu": "auto", "network_gbps": 2.5}) == Machine(
        6, False, 2.5, None
    )
    assert Machine.from_config(
        {"cores": 16, "gpu": True, "network_gbps": 1.0, "hourly_price": 1.2}
    ) == Machine(16, True, 1.0, 1.2)


@pytest.mark.parametrize(
    ("machine", "key"),
    [
        ({"cores": 0}, "machine.cores"),
        ({"gpu": "yes"}, "machine.gpu"),
        ({"network_gbps": 0}, "machine.network_gbps"),
        ({"hourly_price": -1}, "machine.hourly_price"),
        ({"ram": 64}, "machine.ram"),
    ],
)
def test_bad_machine_keys_are_named(world, machine, key):
    config = validate_config({"aoi": str(world.aoi_gpkg), "months": ["2022-01"]})
    assert config["machine"] == {
        "cores": None,
        "gpu": "auto",
        "network_gbps": 1.0,
        "hourly_price": None,
    }
    config["machine"] = copy.deepcopy(config["machine"]) | machine
    with pytest.raises(ConfigError) as excinfo:
        validate_config(config)
    assert excinfo.value.key == key


def test_the_composite_costs_each_scenes_mask_and_each_acquisitions_observations():
    """Overlapping tiles of one acquisition are read as masks, but composited once: 23 of
    the 30 gigapixels of windows are acquisitions' observations."""
    fused = MONTH | {"acquisition_pixels": 23e9}
    costs = COSTS | {"composite_observation_share": 0.8}
    by_hand = 0.1 * (0.2 * 30_000 + 0.8 * 23_000)  # 2,440 CPU s against 3,000 unfused
    assert timeplan.composite_cpu_s(fused, costs) == pytest.approx(by_hand)
    assert timeplan.composite_cpu_s(MONTH, costs) == pytest.approx(3_000)
    unfused, fused_work = (
        timeplan.stage_work(m, True, False, costs)["composite"]["cpu_s"] for m in (MONTH, fused)
    )
    assert unfused - fused_work == pytest.approx(3_000 - by_hand)
