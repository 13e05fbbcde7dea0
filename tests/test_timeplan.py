"""Time plan: stage seconds from counted work, per machine, against a hand computation."""

from __future__ import annotations

import copy

import pytest

from s2basemap import timeplan
from s2basemap.config import ConfigError, validate_config
from s2basemap.timeplan import CPU_COSTS, GPU_OCM_S_PER_MPX, Machine, format_time_plan, time_plan

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


def test_gpu_box_month_is_its_network_bound_sweep_then_the_last_column_and_outputs():
    plan = time_plan({"2025-06": dict(MONTH)}, BOX, uses_ocm=True)
    c, mpx = timeplan.costs_for(gpu=True), 30e3
    # 10 fetches at once (the vast profile's network slots), a core each
    fetch_cpu = (400 * c["job_start_s"] + mpx * c["fetch_cpu_s_per_mpx"]) / 10
    fetch = max(fetch_cpu, 236e9 * 8 / 1e9)
    mask = max(
        (400 * c["job_start_s"] + mpx * (c["mask_cpu_s_per_mpx"] + c["ocm_host_cpu_s_per_mpx"]))
        / 16,
        mpx * GPU_OCM_S_PER_MPX,
    )
    # 8 column jobs of 2 threads at once on 16 cores (gpu_slots), each keeping both busy
    composite = (22 * c["composite_job_start_s"] + mpx * c["composite_cpu_s_per_scene_mpx"]) / 16
    outputs = 3 * c["job_start_s"] + 400 * 2048**2 / 1e6 * c["outputs_wall_s_per_mpx"]
    stages = plan["periods"]["2025-06"]["stages"]
    for name, expected in (
        ("fetch", fetch),
        ("mask", mask),
        ("composite", composite),
        ("outputs", outputs),
    ):
        assert stages[name]["seconds"] == pytest.approx(expected, abs=0.1), name
    jobs = 2 * 400 + 22 + 3  # fetch and mask per scene, composite per column, 3 per month
    assert plan["snakemake"] == {
        "jobs": jobs,
        "seconds": pytest.approx(
            c["snakemake_start_s"] + c["numba_compile_s"] + 0.0245 * jobs + 2.76e-6 * jobs**2,
            abs=0.1,
        ),
    }
    # composites run during the sweep, on the cores the fetches and masks leave; only
    # the columns that need the last scenes follow it, the largest on its job's 2 threads
    last_column = (c["composite_job_start_s"] + mpx * c["composite_cpu_s_per_scene_mpx"] / 16) / 2
    month = plan["periods"]["2025-06"]
    assert month["last_columns_seconds"] == pytest.approx(last_column, abs=0.1)
    assert last_column < composite / 2
    assert month["sweep_seconds"] == pytest.approx(fetch, abs=0.1)  # the network's 31 min
    assert month["sweep_bound_by"] == "network"
    assert plan["total_seconds"] == pytest.approx(
        fetch + last_column + outputs + plan["snakemake"]["seconds"], abs=0.3
    )
    assert stages["fetch"]["bound_by"] == "network"  # 236 GB at 1 Gbit/s is 31 min
    assert "cost" not in plan


def test_the_box_costs_replace_the_vms_only_where_measured_there():
    box, vm = timeplan.costs_for(gpu=True), timeplan.costs_for(gpu=False)
    assert vm == timeplan.DEV_VM_COSTS
    assert set(box) == set(vm)
    for key in timeplan.BOX_NOT_YET_MEASURED:
        assert box[key] == vm[key], key
    assert box["composite_cpu_s_per_scene_mpx"] == pytest.approx(17.4 / 125.8)
    assert set(timeplan.BOX_COSTS).isdisjoint(timeplan.BOX_NOT_YET_MEASURED)
    # inference on the CPU: a GPU box runs it on the GPU
    on_the_cpu = {"ocm_cpu_s_per_mpx", "ocm_cpu_threads_busy"}
    assert set(timeplan.BOX_COSTS) | set(timeplan.BOX_NOT_YET_MEASURED) | on_the_cpu == set(vm)


def test_composite_cores_follow_jobs_threads_and_the_measured_busy_cores():
    costs = {"composite_cores_busy_per_job": 3.0}
    assert timeplan.composite_cores(22, 16, costs) == 16  # 8 jobs (gpu_slots) of 2 threads
    assert timeplan.composite_cores(2, 16, costs) == 4  # only 2 columns to composite
    assert timeplan.composite_cores(22, 48, costs) == 16  # 8 jobs at most
    busy = {"composite_cores_busy_per_job": 1.2}
    assert timeplan.composite_cores(22, 2, busy) == 1.2  # one job of 2 threads


def test_without_a_gpu_inference_runs_on_the_cores_and_bounds_the_month():
    cpu_box = Machine(cores=16, gpu=False, network_gbps=1.0)
    plan = time_plan({"2025-06": dict(MONTH)}, cpu_box, uses_ocm=True)
    c = CPU_COSTS
    mask = (400 * c["job_start_s"] + 30e3 * (c["mask_cpu_s_per_mpx"] + c["ocm_cpu_s_per_mpx"])) / (
        16 * c["ocm_cpu_threads_busy"]  # inference keeps only a share of its threads busy
    )
    month = plan["periods"]["2025-06"]
    assert month["stages"]["mask"]["seconds"] == pytest.approx(mask, abs=0.1)
    assert plan["bound_by"] == {"stage": "mask", "resource": "CPU"}
    # the cores are the sweep's busiest resource: fetches, masks and all but the last
    # columns' composites share them, one after another in effect
    fetch_cpu = (400 * c["job_start_s"] + 30e3 * c["fetch_cpu_s_per_mpx"]) / 10
    composite = month["stages"]["composite"]["seconds"]
    assert month["sweep_seconds"] == pytest.approx(
        fetch_cpu + mask + composite - month["last_columns_seconds"], abs=0.3
    )
    assert month["sweep_bound_by"] == "CPU"
    assert month["total_seconds"] == pytest.approx(
        fetch_cpu + mask + composite + month["stages"]["outputs"]["seconds"], abs=0.3
    )
    # SCL-only masks need no model at all
    scl = time_plan({"2025-06": dict(MONTH)}, cpu_box, uses_ocm=False)
    assert scl["stages"]["mask"] < plan["stages"]["mask"] / 3


def test_months_add_up_and_a_price_gives_the_cost():
    priced = Machine(cores=16, gpu=True, network_gbps=1.0, hourly_price=1.5)
    one = time_plan({"2025-06": dict(MONTH)}, priced, uses_ocm=True)
    two = time_plan({"2025-06": dict(MONTH), "2025-07": dict(MONTH)}, priced, uses_ocm=True)
    # the run's start is paid once; scheduling grows a little faster than the jobs
    run = {
        label: p["total_seconds"] - p["snakemake"]["seconds"]
        for label, p in (("one", one), ("two", two))
    }
    assert run["two"] == pytest.approx(2 * run["one"], abs=0.2)
    assert (
        two["snakemake"]["seconds"]
        > 2 * one["snakemake"]["seconds"]
        - CPU_COSTS["snakemake_start_s"]
        - CPU_COSTS["numba_compile_s"]
    )
    assert two["cost"] == pytest.approx(round(two["total_seconds"] / 3600 * 1.5, 2))
    report = format_time_plan(two)
    assert "16 cores, a GPU, 1 Gbit/s" in report
    assert f"= {two['cost']:.2f}" in report and "bound by: fetch (network)" in report


def test_faster_network_shortens_only_what_the_network_bounded():
    fast = time_plan({"m": dict(MONTH)}, Machine(16, True, 10.0), uses_ocm=True)
    slow = time_plan({"m": dict(MONTH)}, BOX, uses_ocm=True)
    assert fast["stages"]["fetch"] < slow["stages"]["fetch"] / 2
    assert fast["stages"]["composite"] == slow["stages"]["composite"]
    # the masks' inference then bounds the sweep
    assert fast["periods"]["m"]["sweep_bound_by"] == "GPU"
    assert fast["periods"]["m"]["sweep_seconds"] == fast["stages"]["mask"]


def test_a_month_of_one_column_composites_it_all_after_the_sweep():
    one_column = dict(MONTH, composite_jobs=1, largest_column_tiles=400)
    month = time_plan({"m": one_column}, BOX, uses_ocm=True)["periods"]["m"]
    stages = month["stages"]
    assert month["last_columns_seconds"] == pytest.approx(stages["composite"]["seconds"], abs=0.1)
    assert month["total_seconds"] == pytest.approx(
        stages["fetch"]["seconds"] + stages["composite"]["seconds"] + stages["outputs"]["seconds"],
        abs=0.3,
    )


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
    plan = time_plan({"m": empty}, BOX, uses_ocm=True)
    assert plan["total_seconds"] == pytest.approx(
        CPU_COSTS["snakemake_start_s"] + CPU_COSTS["numba_compile_s"], abs=0.1
    )
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
