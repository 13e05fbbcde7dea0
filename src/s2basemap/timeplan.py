"""Time plan: how long each stage of a run takes on a given machine, and what it costs.

A model, not a measurement: per-unit costs (CPU seconds per megapixel of scene
window, GPU seconds per megapixel of inference, bytes over the network) times
the work the storage plan counted, spread over the machine's cores, GPU and
bandwidth. Where each cost was measured is written next to it; rerun
`python tests/benchmarks/costs.py` on new hardware to refresh them.

How stages combine within a month: the month goes west to east (job priorities
order fetches and masks by the first output-tile column their scene touches, and
a column is composited as soon as its scenes are masked), so fetches, masks and
composites overlap. That sweep lasts as long as the busiest resource it shares:
the network (fetches), the GPU (inference), or the cores (the fetches', masks'
and composites' CPU together). Only the last columns wait for the last scenes:
they are composited after the sweep, at most as long as the largest column's job,
and the mosaic COGs are written once all tiles are done. Months follow one
another. `tests/benchmarks/scale.py --timed` replays an Arkansas month through
the real scheduler with these costs to check it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import asdict, dataclass

# Measured on the development machine (2 cores of an x86-64 cloud VM) on 2026-12-04 with
# `python tests/benchmarks/costs.py --edge 4096`, after the stage work of that day; CPU
# seconds across all threads. The same VM's runs differ by up to 25 %. The figures of
# 2026-12-01 (project at e139862) are in tests/benchmarks/plans.py.
DEV_VM_COSTS = {
    # a Snakemake script job: Python start, unpickling the job, importing the package
    "job_start_s": 0.69,
    # a composite job's start, with the percentile kernel loaded from numba's cache
    "composite_job_start_s": 1.07,
    # the first composite job in a new work_dir compiles the kernels into its cache
    "numba_compile_s": 2.7,
    # Snakemake reading this workflow and building a dry run's DAG (once per run)
    "snakemake_start_s": 2.58,
    # fetch: 4 bands at 10 m + SCL at 20 m from COGs laid out and compressing as Collection
    # 1's (deflate level 9, predictor 2, 1024 px blocks) over HTTP on loopback, offset
    # check, written as the scene raster (6.3 CPU s a full scene; 0.26 before that day's
    # work, 0.39 on 2026-12-01 with smoother, more compressible fields)
    "fetch_cpu_s_per_mpx": 0.0525,
    # mask: reading the scene raster, SCL and nodata bits, writing (mode scl; every mode
    # does this): 2.3 CPU s a full scene (9.5 before the kernels)
    "mask_cpu_s_per_mpx": 0.0188,
    # OmniCloudMask inference on the CPU (fp32, 20 m, fabricated v4 weights: the real compute)
    "ocm_cpu_s_per_mpx": 1.68,
    # the share of its threads that CPU inference keeps busy (box benchmark on this VM,
    # 2026-12-04: a mask job of 2 threads kept 1.57 cores busy)
    "ocm_cpu_threads_busy": 0.78,
    # OmniCloudMask's host work around a GPU's inference: block means to 20 m (0.6 CPU s a
    # full scene; the classes' combination is in mask_cpu_s_per_mpx)
    "ocm_host_cpu_s_per_mpx": 0.005,
    # composite: per megapixel of scene window over a tile (warped reads, gather,
    # percentile), from the box benchmark's month on this VM (2026-12-04, --tiles 1
    # --dates 4: 74.3 CPU s for 6 column jobs over 4 full scenes, less their start).
    # costs.py's single tile gives 0.075: its fields are smoother and its 30 scenes each
    # cover the whole tile, where a month's tiles also hold scenes that cover a part.
    "composite_cpu_s_per_scene_mpx": 0.141,
    # cores one composite job keeps busy at most, whatever its threads (the same run: a
    # job of 2 threads kept 1.68 cores busy)
    "composite_cores_busy_per_job": 1.68,
    # mosaic and count COGs with overviews, coverage and quicklook, per output megapixel
    # (wall on 2 cores: this step is one job, GDAL's threads do the rest)
    "outputs_wall_s_per_mpx": 0.155,
}
CPU_COSTS = DEV_VM_COSTS  # the plan's costs where nothing better is known
# The share of a composite's cost per scene-megapixel that goes with the observations
# (pixels read, gathered, composited) rather than the scenes (masks read, fused): from
# `python tests/benchmarks/bench.py fusion --threads 2` on the development VM
# (2026-12-08, both cores also loaded by other work), one 2048 px tile of 30 scenes in
# 15 acquisitions of 2: 14.67 CPU s fused against 16.71 unfused (0.88) at 0.51 of the
# observation-pixels, so share = (1 - 0.88) / (1 - 0.51). Most of a tile's cost is per
# scene: its index map's share, its mask, its window's read and decompression.
COMPOSITE_OBSERVATION_SHARE = (1 - 14.67 / 16.71) / (1 - 57.47 / 112.70)

# Measured on a 16-core box with one NVIDIA H200 (the device machine, 2026-12-04, project
# at e139862): one 2048 px composite tile from 30 scenes (125.8 scene-megapixels) took
# 17.4 CPU s in 4.8 s of wall time at 16 threads, 3.6 cores busy. The plan uses these on
# a machine with a GPU; every other cost there is the development VM's until the box
# benchmark (tests/benchmarks/box.py, run by tests/benchmarks/device/run.sh) measures it.
BOX_COSTS = {
    "composite_cpu_s_per_scene_mpx": 17.4 / 125.8,
    "composite_cores_busy_per_job": 3.6,
}
BOX_NOT_YET_MEASURED = (
    "job_start_s",
    "composite_job_start_s",
    "numba_compile_s",
    "snakemake_start_s",
    "fetch_cpu_s_per_mpx",
    "mask_cpu_s_per_mpx",
    "ocm_host_cpu_s_per_mpx",
    "outputs_wall_s_per_mpx",
)


def costs_for(gpu: bool) -> dict:
    """The per-unit costs for a machine with or without a GPU (the box's where measured)."""
    return DEV_VM_COSTS | BOX_COSTS if gpu else DEV_VM_COSTS


# The mask stage on a GPU, per full 10980 x 10980 px scene (120.56 megapixels):
# - inference is about 0.93 s (an NVIDIA H100 80GB HBM3, 2026-11-25, 20 m, batch 4,
#   fp16, fabricated v4 weights), and an A100 is taken as 3.2x slower at it: NVIDIA's
#   datasheets give 989 dense FP16 tensor TFLOPS for the H100 SXM against 312 for the
#   A100 (memory bandwidth differs by only 1.6x, so this errs on the slow side);
# - `s2basemap.ocm.predict` with its host work took 3.5-4.6 s on the H200 box
#   (2026-12-04, project at e139862): about 3 s of numpy around 0.9 s of inference;
# - that host work is now two numba kernels, about 1.2 CPU s a scene on the VM
#   (maskkernels; ocm_host_cpu_s_per_mpx and mask_cpu_s_per_mpx count it on the cores),
#   and the shared model process runs it in a thread per scene outside the device lock,
#   so the device's own time is the inference. box.py's mask row checks this on a GPU
#   (stage wall against the sum of the scenes' inference seconds): not yet run there.
FULL_SCENE_MPX = 10980**2 / 1e6
H100_OCM_GPU_S_PER_MPX = 0.93 / FULL_SCENE_MPX
A100_SLOWER_THAN_H100 = 3.2
GPU_OCM_S_PER_MPX = H100_OCM_GPU_S_PER_MPX * A100_SLOWER_THAN_H100
# Snakemake's own work in its main process (DAG, scheduling, bookkeeping), from the
# no-op execution of the Arkansas fixture under the vast profile in
# tests/benchmarks/scale.py on the development machine: 33.5 s for 1,204 jobs (one
# month), 921 s for 14,359 jobs (12 months). It grows faster than the job count
# (each scheduling round looks at every ready job), so the fit through both is
# a * jobs + b * jobs^2.
SCHEDULER_S_PER_JOB = 0.0245
SCHEDULER_S_PER_JOB_SQUARED = 2.76e-6
NETWORK_SLOTS = 10  # concurrent fetches in the vast profile (resources: network)
GPU_SLOTS = 8  # GPU-tagged jobs at once in the vast profile (resources: gpu_slots)
COMPOSITE_THREADS = 2  # a composite job's threads (workflow/rules/composite.smk)
STAGES = ("fetch", "mask", "composite", "outputs")
PARTS = ("sweep", "last_columns")  # how the stages add up to a month (period_time)
OUTPUT_JOBS = 3  # a period's scene summary, mosaic and metadata jobs, one after another


def scheduler_seconds(jobs: int, costs: dict | None = None) -> float:
    """Snakemake's own seconds for `jobs`; `costs` may set its two coefficients (a test's
    cost table), else they are the fit above."""
    costs = costs or {}
    a = costs.get("scheduler_s_per_job", SCHEDULER_S_PER_JOB)
    b = costs.get("scheduler_s_per_job_squared", SCHEDULER_S_PER_JOB_SQUARED)
    return a * jobs + b * jobs**2


@dataclass(frozen=True)
class Machine:
    cores: int
    gpu: bool
    network_gbps: float
    hourly_price: float | None = None

    @classmethod
    def from_config(cls, machine: dict) -> Machine:
        """The configured machine; null cores and gpu "auto" are read off this machine."""
        cores = machine.get("cores") or os.cpu_count() or 1
        gpu = machine.get("gpu", "auto")
        return cls(
            int(cores),
            has_gpu() if gpu == "auto" else bool(gpu),
            float(machine.get("network_gbps", 1.0)),
            machine.get("hourly_price"),
        )

    def describe(self) -> str:
        return (
            f"{self.cores} cores, {'a GPU' if self.gpu else 'no GPU'}, {self.network_gbps:g} Gbit/s"
        )


def has_gpu() -> bool:
    """An NVIDIA GPU is visible (nvidia-smi lists one); no CUDA library is imported."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return False
    try:
        result = subprocess.run(
            [exe, "-L"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and "GPU" in result.stdout


def composite_cpu_s(period: dict, costs: dict = CPU_COSTS) -> float:
    """The composite stage's CPU seconds, less its jobs' starts: every scene's mask is
    read and fused, per scene-megapixel; the pixels read, gathered and composited are
    one observation per acquisition, per acquisition-megapixel (`acquisition_pixels`:
    the windows with each acquisition's overlapping tiles counted once).

    `composite_cpu_s_per_scene_mpx` is measured with every scene an acquisition of its
    own (box.py, costs.py), so observations and scenes are the same there;
    COMPOSITE_OBSERVATION_SHARE of it scales with the observations."""
    scene_mpx = period["window_pixels"] / 1e6
    observation_mpx = period.get("acquisition_pixels", period["window_pixels"]) / 1e6
    per_mpx = costs["composite_cpu_s_per_scene_mpx"]
    share = costs.get("composite_observation_share", COMPOSITE_OBSERVATION_SHARE)
    return per_mpx * ((1 - share) * scene_mpx + share * observation_mpx)


def stage_work(period: dict, uses_ocm: bool, gpu: bool, costs: dict = CPU_COSTS) -> dict:
    """Per stage: CPU seconds, GPU seconds, network bytes and serial seconds of one period."""
    mpx = period["window_pixels"] / 1e6
    scenes, start = period["scenes"], costs["job_start_s"]
    mask_cpu = scenes * start + mpx * costs["mask_cpu_s_per_mpx"]
    gpu_s = 0.0
    if uses_ocm and gpu:
        mask_cpu += mpx * costs["ocm_host_cpu_s_per_mpx"]
        gpu_s = mpx * costs.get("gpu_ocm_s_per_mpx", GPU_OCM_S_PER_MPX)
    elif uses_ocm:
        mask_cpu += mpx * costs["ocm_cpu_s_per_mpx"]
    composite_cpu = composite_cpu_s(period, costs)
    largest = period["largest_column_tiles"] / period["tiles"] if period["tiles"] else 0.0
    return {
        "fetch": {
            "cpu_s": scenes * start + mpx * costs["fetch_cpu_s_per_mpx"],
            "network_bytes": period["network_bytes"],
        },
        "mask": {"cpu_s": mask_cpu, "gpu_s": gpu_s},
        "composite": {
            "cpu_s": period["composite_jobs"] * costs["composite_job_start_s"] + composite_cpu,
            # the largest column's job, on the cores one job keeps busy
            "last_column_s": (costs["composite_job_start_s"] + composite_cpu * largest)
            / min(COMPOSITE_THREADS, costs["composite_cores_busy_per_job"]),
        },
        "outputs": {
            "serial_s": OUTPUT_JOBS * start
            + period["output_pixels"] / 1e6 * costs["outputs_wall_s_per_mpx"]
            if scenes
            else 0.0
        },
    }


def stage_seconds(work: dict, machine: Machine, cpu_slots: float) -> tuple[float, str]:
    """Wall seconds of one stage alone on the machine, and the resource that bounds it."""
    candidates = {
        "CPU": work.get("cpu_s", 0.0) / max(min(machine.cores, cpu_slots), 1e-3),
        "network": work.get("network_bytes", 0) * 8 / (machine.network_gbps * 1e9),
        "GPU": work.get("gpu_s", 0.0),
        "serial": work.get("serial_s", 0.0),
    }
    resource = max(candidates, key=candidates.get)
    return candidates[resource], resource


def composite_cores(jobs: int, cores: int, costs: dict = CPU_COSTS) -> float:
    """Cores the composite stage keeps busy: as many column jobs as the cores (at their
    threads) and GPU slots allow, each busy up to its measured figure."""
    threads = min(COMPOSITE_THREADS, cores)
    at_once = max(1, min(GPU_SLOTS, jobs, cores // threads))
    return min(cores, at_once * min(threads, costs["composite_cores_busy_per_job"]))


def period_time(period: dict, machine: Machine, uses_ocm: bool, costs: dict | None = None) -> dict:
    costs = costs or costs_for(machine.gpu)
    work = stage_work(period, uses_ocm, machine.gpu, costs)
    cpu_inference = uses_ocm and not machine.gpu
    slots = {
        "fetch": NETWORK_SLOTS,
        "mask": machine.cores * (costs["ocm_cpu_threads_busy"] if cpu_inference else 1.0),
        "composite": composite_cores(period["composite_jobs"], machine.cores, costs),
        "outputs": machine.cores,
    }
    stages, on_the_cores = {}, {}
    for stage in STAGES:
        seconds, resource = stage_seconds(work[stage], machine, slots[stage])
        stages[stage] = {"seconds": round(seconds, 1), "bound_by": resource}
        on_the_cores[stage] = stage_seconds(
            {"cpu_s": work[stage].get("cpu_s", 0.0)}, machine, slots[stage]
        )[0]
    # the last columns wait for the month's last scenes; the rest is composited
    # during the sweep, on the cores the fetches and masks leave
    last_columns = min(stages["composite"]["seconds"], work["composite"]["last_column_s"])
    cores = on_the_cores["fetch"] + on_the_cores["mask"] + stages["composite"]["seconds"]
    bounds = {
        stages["fetch"]["bound_by"]: stages["fetch"]["seconds"],
        "CPU": cores - last_columns,
    }
    if stages["mask"]["seconds"] > bounds.get(stages["mask"]["bound_by"], 0.0):
        bounds[stages["mask"]["bound_by"]] = stages["mask"]["seconds"]
    bound_by = max(bounds, key=bounds.get)
    sweep = bounds[bound_by]
    total = sweep + last_columns + stages["outputs"]["seconds"]
    return {
        "stages": stages,
        "sweep_seconds": round(sweep, 1),
        "sweep_bound_by": bound_by,
        "last_columns_seconds": round(last_columns, 1),
        "total_seconds": round(total, 1),
    }


def job_count(period: dict) -> int:
    """Fetch and mask per scene, composite per column of tiles, summary, mosaic and metadata."""
    return 2 * period["scenes"] + period["composite_jobs"] + OUTPUT_JOBS if period["scenes"] else 0


def time_plan(
    periods: dict[str, dict], machine: Machine, uses_ocm: bool, costs: dict | None = None
) -> dict:
    """Per period and for the run: stage seconds, the run's own overhead, the total,
    the bounding stage and the cost; `costs` default to the machine's (`costs_for`)."""
    costs = costs or costs_for(machine.gpu)
    per_period = {label: period_time(p, machine, uses_ocm, costs) for label, p in periods.items()}
    stage_totals = {
        stage: round(sum(p["stages"][stage]["seconds"] for p in per_period.values()), 1)
        for stage in STAGES
    }
    for part in PARTS:
        stage_totals[part] = round(sum(p[f"{part}_seconds"] for p in per_period.values()), 1)
    jobs = sum(job_count(p) for p in periods.values())
    overhead = round(
        costs["snakemake_start_s"] + costs["numba_compile_s"] + scheduler_seconds(jobs, costs), 1
    )
    total = round(sum(p["total_seconds"] for p in per_period.values()) + overhead, 1)
    bound = max(STAGES, key=stage_totals.get)
    resources = [p["stages"][bound]["bound_by"] for p in per_period.values()]
    plan = {
        "machine": asdict(machine),
        "periods": per_period,
        "stages": stage_totals,
        "snakemake": {"jobs": jobs, "seconds": overhead},
        "total_seconds": total,
        "bound_by": {
            "stage": bound,
            "resource": max(set(resources), key=resources.count) if resources else None,
        },
        "model": "s2basemap.timeplan (per-unit costs measured as documented there)",
    }
    if machine.hourly_price is not None:
        plan["cost"] = round(total / 3600 * machine.hourly_price, 2)
    return plan


def duration(seconds: float) -> str:
    seconds = round(seconds)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


def format_time_plan(plan: dict) -> str:
    machine = Machine(**plan["machine"])
    rows = [("period", *STAGES[:-1], "sweep", "last columns", "outputs", "total")]
    for label, p in plan["periods"].items():
        alone = [p["stages"][s]["seconds"] for s in STAGES]
        parts = [p[f"{part}_seconds"] for part in PARTS]
        rows.append(
            (label, *map(duration, alone[:-1] + parts + alone[-1:]), duration(p["total_seconds"]))
        )
    totals = [plan["stages"][s] for s in STAGES[:-1] + PARTS + STAGES[-1:]]
    rows.append(
        (
            "total",
            *map(duration, totals),
            duration(plan["total_seconds"] - plan["snakemake"]["seconds"]),
        )
    )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [
        (
            f"time plan for {machine.describe()} (config: machine); each stage alone, then "
            f"how they add up: a month goes west to east, so fetch, mask and composite "
            f"overlap in its sweep (as long as the busiest of network, GPU and cores), "
            f"then its last columns are composited and its outputs written:"
        )
    ]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(row, widths)) for row in rows]
    snakemake = plan["snakemake"]
    lines.append(
        f"Snakemake's start-up and scheduling of {snakemake['jobs']} jobs, and compiling the "
        f"percentile kernel: "
        f"{duration(snakemake['seconds'])}; in all {duration(plan['total_seconds'])}"
    )
    bound = plan["bound_by"]
    lines.append(f"bound by: {bound['stage']} ({bound['resource']})")
    if "cost" in plan:
        lines.append(
            f"cost: {plan['total_seconds'] / 3600:.2f} h x {machine.hourly_price:g} per h "
            f"= {plan['cost']:.2f}"
        )
    return "\n".join(lines)
