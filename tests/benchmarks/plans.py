"""The time plan for the test world and the Arkansas fixture, with the costs of e139862 and now.

    python tests/benchmarks/plans.py

Each fixture is served on 127.0.0.1 and planned by the real `snakemake plan`; its
periods (scenes, pixels, bytes, jobs) are then put through s2basemap.timeplan twice:
with the per-unit costs the project had at e139862 (before the box benchmark and the
stage work of 2026-12-04) and with today's. Not part of the test run.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import yaml

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "benchmarks")]

from s2basemap.timeplan import (
    A100_SLOWER_THAN_H100,
    H100_OCM_GPU_S_PER_MPX,
    Machine,
    costs_for,
    duration,
    format_time_plan,
    time_plan,
)

# s2basemap.timeplan at e139862: the VM's costs of 2026-12-01, every core busy in the mask
# and composite stages, the GPU counting inference alone
E139862_COSTS = {
    "job_start_s": 1.23,
    "composite_job_start_s": 1.80,
    "numba_compile_s": 5.9,
    "snakemake_start_s": 2.49,
    "fetch_cpu_s_per_mpx": 0.39,
    "mask_cpu_s_per_mpx": 0.086,
    "ocm_cpu_s_per_mpx": 2.15,
    "ocm_cpu_threads_busy": 1.0,
    "ocm_host_cpu_s_per_mpx": 0.018,
    "composite_cpu_s_per_scene_mpx": 0.114,
    "composite_observation_share": 0.0,  # every scene was an observation of its own
    "composite_cores_busy_per_job": 64,
    "outputs_wall_s_per_mpx": 0.26,
    "gpu_ocm_s_per_mpx": H100_OCM_GPU_S_PER_MPX * A100_SLOWER_THAN_H100,
}


def planned_periods(workdir: Path, config: dict) -> dict:
    from scale import snakemake

    workdir.mkdir(parents=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    snakemake(TESTS.parent / "workflow" / "Snakefile", workdir, "plan")
    return json.loads((workdir / "work" / "plan.json").read_text())["periods"]


def test_world_periods(root: Path) -> dict:
    from conftest import world_config
    from testworld import served_world

    with served_world(root / "world") as (world, _, _, _):
        return planned_periods(root / "run-world", world_config(world))


def arkansas_periods(root: Path) -> dict:
    from scale import state_config
    from statescale import served_state

    with served_state(root / "fixture", months=1) as world:
        workdir = root / "run-arkansas"
        return planned_periods(workdir, state_config(world, 1, workdir))


def line(label: str, periods: dict, machine: Machine, uses_ocm: bool) -> str:
    cells = []
    for name, costs in (("e139862", E139862_COSTS), ("now", costs_for(machine.gpu))):
        plan = time_plan(periods, machine, uses_ocm, costs)
        stages = "  ".join(f"{s} {duration(v)}" for s, v in plan["stages"].items())
        cells.append(f"  {name:>7}: {duration(plan['total_seconds']):>7}   ({stages})")
    return "\n".join([f"{label}, {machine.describe()}:", *cells])


def fusion_line(periods: dict, machine: Machine) -> str:
    """The month's observations and composite stage with every scene an observation (as
    before acquisitions were fused) and with one per acquisition (now)."""
    (period,) = periods.values()
    unfused = {
        label: dict(p, acquisition_pixels=p["window_pixels"]) for label, p in periods.items()
    }
    plans = [time_plan(ps, machine, True, costs_for(machine.gpu)) for ps in (unfused, periods)]
    stages = [p["stages"]["composite"] for p in plans]
    share = 1 - period["acquisition_pixels"] / period["window_pixels"]
    return (
        f"Arkansas, one month, {machine.describe()}: observation-pixels "
        f"{period['window_pixels'] / 1e9:.2f} G as scenes, {period['acquisition_pixels'] / 1e9:.2f} G "
        f"as acquisitions ({share:.1%} fewer); composite stage {duration(stages[0])} unfused, "
        f"{duration(stages[1])} fused; month {duration(plans[0]['total_seconds'])} unfused, "
        f"{duration(plans[1]['total_seconds'])} fused"
    )


def main() -> None:
    cores = os.cpu_count() or 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        world = test_world_periods(root)
        arkansas = arkansas_periods(root)
    print(line("test world (2 months, SCL masks)", world, Machine(cores, False, 10.0), False))
    for gbps in (1.0, 10.0):
        print(line("Arkansas, one month", arkansas, Machine(16, True, gbps), True))
    print(line("Arkansas, one month", arkansas, Machine(16, False, 1.0), True))
    print(fusion_line(arkansas, Machine(16, True, 1.0)))
    # the README's table: today's plan for the rented box at a typical price
    print(format_time_plan(time_plan(arkansas, Machine(16, True, 1.0, 1.2), True)))


if __name__ == "__main__":
    main()
