"""Box benchmark: a month in miniature with full-size scenes, stage by stage, on this machine.

    python tests/benchmarks/box.py                         # 4 MGRS tiles x 8 dates, no cap
    python tests/benchmarks/box.py --gbps 0 1              # then the fetch again at 1 Gbit/s
    python tests/benchmarks/box.py --tiles 1 --dates 4 --ocm-resolution 40   # 2 cores
    python tests/benchmarks/box.py ... --replan month.json --costs costs.json   # re-predict

The world (tests/benchmarks/boxworld.py) is served over loopback HTTP by a process
of its own. Each stage runs the package's own job functions, one fresh process per
job as Snakemake's `script:` jobs are, at the vast profile's concurrency on this
machine's cores (fetch: 10 network slots, 1 thread each; mask: 2 threads, through
the shared model process; composite: a column a job, 2 threads, `gpu_slots`; then
the mosaic, count COG, quicklook and the AOI's coverage in one job). Snakemake's own
cost per job is measured by scale.py and costs.py, and is left out here.

Per stage it prints wall time, CPU seconds (the whole machine's, less the HTTP
server's), cores busy (mean and 90th percentile of 0.5 s samples), GPU busy
(`nvidia-smi`, where there is one) and bytes read; then the time plan's prediction
for the same scenes on this machine (s2basemap.timeplan with the costs it would use
here) and the ratio of measured to predicted. `--json` writes the figures; `--costs`
puts per-unit costs measured on this machine (costs.py's JSON line) into the plan, and
`--replan` predicts a month written by `--json` again without running it.
Not part of the test run (tests/test_box.py runs a small version to keep it working).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from boxworld import Served, WorldSpec, aoi_of, generate, scenes

# the vast profile's budgets and the composite rule's threads, as the time plan has them
from s2basemap.timeplan import COMPOSITE_THREADS, GPU_SLOTS, NETWORK_SLOTS

PERIOD = "2025-06"
TILE_SIZE = 2048
OUTPUT_CRS = "EPSG:5070"
MASK_THREADS = 2  # the mask rule's threads (workflow/rules/mask.smk)
CLK_TCK = os.sysconf("SC_CLK_TCK")


def concurrency(cores: int, threads: int, limit: int) -> tuple[int, int]:
    """(jobs at once, threads each) as Snakemake gives them: threads capped at the cores."""
    threads = min(threads, cores)
    return max(1, min(limit, cores // threads)), threads


# --- jobs: each runs in a fresh process, as a Snakemake script job does ---------------------


def fetch_job(scene: dict, aoi, work: str) -> dict:
    from s2basemap.fetch import FetchOptions, fetch_scene_job, fetch_spec

    w = Path(work)
    fetch_scene_job(
        spec=fetch_spec(scene),
        aoi=aoi,
        tif_path=w / "scenes" / f"{scene['id']}.tif",
        record_path=w / "records" / f"{scene['id']}.json",
        ledger_path=w / "failed" / f"{scene['id']}.json",
        options=FetchOptions(),
        outage_path=w / "outage.json",
    )
    return {}


def mask_job(scene_id: str, work: str, options: dict, shared: bool, threads: int) -> dict:
    from s2basemap.maskserver import run_mask_job

    w = Path(work)
    stats = run_mask_job(
        scene_tif=w / "scenes" / f"{scene_id}.tif",
        record_json=w / "records" / f"{scene_id}.json",
        mask_tif=w / "masks" / f"{scene_id}.tif",
        stats_json=w / "stats" / f"{scene_id}.json",
        options=options,
        shared=shared,
        digest="box-benchmark",
        threads=threads,
        server_log=w / "mask_server.log",
    )
    return {"ocm_s": stats.get("ocm", {}).get("seconds", 0.0)}


def composite_job(
    column: str, tile_scenes: dict, grid, aoi, work: str, threads: int, facts: dict, out: str
) -> dict:
    from s2basemap.composite import Method, composite_column_job
    from s2basemap.manifest import column_scene_ids
    from s2basemap.periods import Period

    w = Path(work)
    ids = column_scene_ids(tile_scenes)
    composite_column_job(
        tile_scenes=tile_scenes,
        scene_tifs=[str(w / "scenes" / f"{i}.tif") for i in ids],
        mask_tifs=[str(w / "masks" / f"{i}.tif") for i in ids],
        grid=grid,
        aoi=aoi,
        method=Method("percentile", 25),
        resampling="nearest",
        out_path=w / out / f"{column}.tif",
        backend="auto",
        threads=threads,
        period=Period.month(PERIOD),
        scene_facts={i: facts[i] for i in ids},
    )
    return {}


def scene_facts(records: list[dict], fused: bool) -> dict:
    """Each scene's acquisition facts; unfused, every scene is an acquisition of its own
    (what the composite did before acquisitions were fused)."""
    from s2basemap.acquisitions import scene_facts as facts_of

    facts = {r["id"]: facts_of(r) for r in records}
    return facts if fused else {i: f | {"acquisition": i} for i, f in facts.items()}


def products_job(grid, columns: dict, aoi, work: str) -> dict:
    from s2basemap.outputs import coverage, write_products

    w = Path(work)
    write_products(
        grid=grid,
        column_paths={c: str(w / "columns" / f"{c}.tif") for c in columns},
        columns=columns,
        products={
            "mosaic": w / "products" / "mosaic.tif",
            "counts": w / "products" / "count.tif",
            "quicklook": w / "products" / "quicklook.png",
        },
        compress="deflate",
        period_label=PERIOD,
    )
    coverage(w / "products" / "mosaic.tif", aoi)  # the metadata job's pixel work
    return {}


# --- measuring -----------------------------------------------------------------------------


def machine_busy_jiffies() -> int:
    with open("/proc/stat") as handle:
        fields = [int(v) for v in handle.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields[:8]
    return user + nice + system + irq + softirq + steal


def process_jiffies(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])  # utime, stime (all its threads)


class Monitor:
    """Samples the machine's busy CPU (less the server's) and the GPU every `interval` s."""

    def __init__(self, server_pid: int, interval: float = 0.5):
        self.server_pid, self.interval = server_pid, interval
        self.samples: list[tuple[float, float]] = []  # (time, cores busy since the last one)
        self.gpu: list[tuple[float, float]] = []  # (time, utilisation %)
        self._stop = threading.Event()
        self._last = (time.monotonic(), self.busy())
        threading.Thread(target=self._sample, daemon=True).start()
        self._smi = None
        if shutil.which("nvidia-smi"):
            self._smi = subprocess.Popen(
                [
                    "nvidia-smi",
                    "--query-gpu=utilization.gpu",
                    "--format=csv,noheader,nounits",
                    f"-lms={int(interval * 1000)}",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                text=True,
            )
            threading.Thread(target=self._read_gpu, daemon=True).start()

    def busy(self) -> int:
        return machine_busy_jiffies() - process_jiffies(self.server_pid)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            now, busy = time.monotonic(), self.busy()
            then, before = self._last
            self.samples.append((now, (busy - before) / CLK_TCK / max(now - then, 1e-6)))
            self._last = (now, busy)

    def _read_gpu(self) -> None:
        for line in self._smi.stdout:
            try:
                self.gpu.append((time.monotonic(), float(line.split(",")[0])))
            except ValueError:
                continue

    def mark(self) -> tuple[float, int]:
        return time.monotonic(), self.busy()

    def since(self, mark: tuple[float, int]) -> dict:
        start, busy = mark
        wall = time.monotonic() - start
        cpu = (self.busy() - busy) / CLK_TCK
        cores = sorted(c for t, c in self.samples if t > start)
        gpu = [u for t, u in self.gpu if t > start]
        return {
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "cores_busy": round(cpu / wall, 2) if wall else 0.0,
            "cores_busy_p90": round(cores[int(0.9 * (len(cores) - 1))], 2) if cores else None,
            "gpu_busy_pct": round(sum(gpu) / len(gpu), 1) if gpu else None,
        }

    def stop(self) -> None:
        self._stop.set()
        if self._smi:
            self._smi.terminate()


def run_stage(name: str, jobs: list, workers: int, monitor: Monitor, served: Served) -> dict:
    """Run `jobs` ((function, args) pairs), `workers` at a time, each in a fresh process."""
    mark, sent = monitor.mark(), served.bytes_sent()
    results = []
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        futures = [pool.submit(func, *args) for func, args in jobs]
        for done, future in enumerate(as_completed(futures), start=1):
            results.append(future.result())
            if done == len(jobs) or done % max(1, len(jobs) // 4) == 0:
                print(
                    f"  {name}: {done}/{len(jobs)} jobs, {time.monotonic() - mark[0]:.0f} s",
                    flush=True,
                )
    figures = monitor.since(mark)
    figures |= {"jobs": len(jobs), "workers": workers, "bytes_read": served.bytes_sent() - sent}
    ocm = [r["ocm_s"] for r in results if r.get("ocm_s")]
    if ocm:
        figures["inference_s"] = round(sum(ocm), 1)
    return figures


def wait_for_mask_server(options: dict, threads: int, timeout: float = 60) -> None:
    """The shared model process exits once idle; the next stage starts without it."""
    from s2basemap.maskserver import socket_path

    path = socket_path(options, "box-benchmark", threads)
    deadline = time.monotonic() + timeout
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.2)


# --- the plan's prediction -----------------------------------------------------------------


def layout_of(records: list[dict], spec: WorldSpec):
    """(aoi, grid, tile -> scene ids, column -> tiles) for the world, as the workflow has them."""
    from s2basemap.grid import output_grid
    from s2basemap.manifest import scenes_by_tile

    aoi = aoi_of(spec)
    grid = output_grid(aoi, OUTPUT_CRS, (10.0, 10.0), TILE_SIZE)
    tiles = grid.tile_ids(aoi.in_crs(grid.crs))
    footprints = {t: grid.tile_footprint_4326(t) for t in tiles}
    tile_scenes = scenes_by_tile({"scenes": records}, footprints)
    return aoi, grid, tile_scenes, grid.columns(tiles)


def period_of(records, aoi, grid, tile_scenes, columns) -> dict:
    """What the storage plan counts of these scenes (bytes, pixels, jobs), as the workflow."""
    from s2basemap.grid import scene_columns
    from s2basemap.storage import estimate_period, size_scenes

    sizes = size_scenes({"period": PERIOD, "scenes": records}, aoi)
    column_tiles = {int(c): len(ts) for c, ts in columns.items()}
    return estimate_period(sizes, grid, aoi, scene_columns(tile_scenes), column_tiles)


def prediction(period: dict, gbps: float, uses_ocm: bool, costs, cores: int, gpu: bool) -> dict:
    """The time plan's stages for this period on this machine."""
    from s2basemap.timeplan import Machine, time_plan

    # no cap: the plan needs a bandwidth; loopback is far faster than the CPU work
    machine = Machine(cores, gpu, gbps or 1000.0)
    return time_plan({PERIOD: period}, machine, uses_ocm, costs)["periods"][PERIOD]["stages"]


def plan_costs(ocm_resolution: int, gpu: bool, measured: dict | None = None) -> dict:
    """The plan's costs for this machine, with `measured` ones (costs.py's) over them;
    OmniCloudMask's CPU cost scales with the inference pixels (measured at 20 m)."""
    from s2basemap.timeplan import costs_for

    costs = dict(costs_for(gpu)) | (measured or {})
    costs["ocm_cpu_s_per_mpx"] *= (20 / ocm_resolution) ** 2
    return costs


def title_of(args, run: dict, cores: int, gpu: bool) -> str:
    cap = f"{run['gbps']:g} Gbit/s" if run["gbps"] else "no bandwidth cap"
    period = run["period"]
    return (
        f"\n{period['scenes']} scenes of {args.edge} px, {period['tiles']} output tiles in "
        f"{period['composite_jobs']} columns, {cap}, {cores} cores, {'a GPU' if gpu else 'no GPU'}, "
        f"mask {args.mask}"
        + (f" at {args.ocm_resolution} m" if args.mask != "scl" else "")
        + f" (plan: {period['network_bytes'] / 1e9:.2f} GB to read)"
    )


def replan(args, costs: dict) -> None:
    """The runs of an earlier --json file against the plan with these costs: a machine's
    measured month set against costs measured on the same machine afterwards."""
    results = json.loads(args.replan.read_text())
    for run in results["runs"]:
        predicted = prediction(
            run["period"], run["gbps"], args.mask != "scl", costs, results["cores"], results["gpu"]
        )
        title = title_of(args, run, results["cores"], results["gpu"])
        print("\n".join(report(run["stages"], predicted, title)), flush=True)


# --- the run -------------------------------------------------------------------------------


def mask_options(args, weights: Path) -> dict:
    from s2basemap.ocm import OCMOptions

    ocm = OCMOptions(
        inference_resolution=args.ocm_resolution,
        weights_dir=str(weights),
        server=args.mask == "ocm+scl",
        server_idle_seconds=3.0,
    )
    return {
        "mode": args.mask,
        "scl_invalid": [1, 3, 8, 9, 10, 11],
        "dilation_metres": 0.0,
        "ocm": asdict(ocm),
    }


def stages(args, records, layout, served, monitor, work: Path, options: dict) -> dict:
    aoi, grid, tile_scenes, columns = layout
    cores = os.cpu_count() or 1
    for sub in ("scenes", "records", "failed", "masks", "stats", "columns", "products"):
        (work / sub).mkdir(parents=True, exist_ok=True)
    figures = {}
    fetch_workers, _ = concurrency(cores, 1, NETWORK_SLOTS)
    print(f"fetch: {len(records)} scenes, {fetch_workers} at a time", flush=True)
    figures["fetch"] = run_stage(
        "fetch",
        [(fetch_job, (s, aoi, str(work))) for s in records],
        fetch_workers,
        monitor,
        served,
    )
    shared = args.mask == "ocm+scl"
    mask_workers, mask_threads = concurrency(cores, MASK_THREADS, GPU_SLOTS if shared else cores)
    print(f"mask: {mask_workers} jobs at a time, {mask_threads} threads each", flush=True)
    figures["mask"] = run_stage(
        "mask",
        [(mask_job, (s["id"], str(work), options, shared, mask_threads)) for s in records],
        mask_workers,
        monitor,
        served,
    )
    if shared:
        wait_for_mask_server(options, mask_threads)
    workers, threads = concurrency(cores, COMPOSITE_THREADS, GPU_SLOTS)
    # --unfused first measures the stage as it was before acquisitions were fused, in
    # the same run and on the same files, into a folder the products do not read
    for stage, fused in (("composite unfused", False),) * args.unfused + (("composite", True),):
        print(
            f"{stage}: {len(columns)} columns, {workers} at a time, {threads} threads", flush=True
        )
        out = "columns" if fused else "columns-unfused"
        (work / out).mkdir(parents=True, exist_ok=True)
        facts = scene_facts(records, fused)
        figures[stage] = run_stage(
            stage,
            [
                (
                    composite_job,
                    (c, {t: tile_scenes[t] for t in ts}, grid, aoi, str(work), threads, facts, out),
                )
                for c, ts in columns.items()
            ],
            workers,
            monitor,
            served,
        )
    print("products: mosaic, count and quicklook", flush=True)
    figures["products"] = run_stage(
        "products", [(products_job, (grid, columns, aoi, str(work)))], 1, monitor, served
    )
    return figures


PLAN_STAGE = {
    "fetch": "fetch",
    "mask": "mask",
    "composite unfused": "composite",  # against the same plan: the ratio shows the saving
    "composite": "composite",
    "products": "outputs",
}


def report(figures: dict, predicted: dict, title: str) -> list[str]:
    header = ("stage", "wall s", "CPU s", "cores", "p90", "GPU %", "GB read", "plan s", "ratio")
    rows = [header]
    total_wall = total_plan = 0.0
    for stage, f in figures.items():
        plan_s = predicted[PLAN_STAGE[stage]]["seconds"]
        if stage != "composite unfused":
            total_wall, total_plan = total_wall + f["wall_s"], total_plan + plan_s
        rows.append(
            (
                stage,
                f"{f['wall_s']:.1f}",
                f"{f['cpu_s']:.1f}",
                f"{f['cores_busy']:.2f}",
                "-" if f["cores_busy_p90"] is None else f"{f['cores_busy_p90']:.2f}",
                "-" if f["gpu_busy_pct"] is None else f"{f['gpu_busy_pct']:.0f}",
                f"{f['bytes_read'] / 1e9:.2f}",
                f"{plan_s:.1f} ({predicted[PLAN_STAGE[stage]]['bound_by']})",
                f"{f['wall_s'] / plan_s:.2f}" if plan_s else "-",
            )
        )
    if len(figures) > 1:
        rows.append(
            ("all", f"{total_wall:.1f}", "", "", "", "", "", f"{total_plan:.1f}",
             f"{total_wall / total_plan:.2f}" if total_plan else "-")
        )  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = [title] + ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in rows]
    mask = figures.get("mask", {})
    if mask.get("inference_s"):
        # the shared process holds the device for the inference alone: on a GPU, a stage
        # near this sum means the scenes' host work overlapped it
        lines.append(
            f"mask: the scenes' inference {mask['inference_s']:.1f} s in all; stage wall / "
            f"inference = {mask['wall_s'] / mask['inference_s']:.2f}"
        )
    return lines


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiles", type=int, default=4, help="MGRS tiles (2 UTM zones from 2 on)")
    parser.add_argument("--dates", type=int, default=8, help="dates per tile")
    parser.add_argument("--edge", type=int, default=10980, help="scene edge in px (test runs only)")
    parser.add_argument(
        "--gbps",
        type=float,
        nargs="+",
        default=[0.0],
        help="bandwidth caps in Gbit/s, 0 for none; the first runs every stage, "
        "each further one the fetch stage again",
    )
    parser.add_argument(
        "--refetch", type=int, help="scenes fetched again under each further cap (default all)"
    )
    parser.add_argument("--mask", choices=("ocm+scl", "scl"), default="ocm+scl")
    parser.add_argument(
        "--unfused",
        action="store_true",
        help="also run the composite stage with every scene an acquisition of its own, "
        "first, for the cost of fusing in the same run",
    )
    parser.add_argument(
        "--ocm-resolution", type=int, default=20, help="metres; 40 keeps a 2-core run short"
    )
    parser.add_argument("--work", type=Path, default=Path("box-benchmark"), help="scratch folder")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder's outputs")
    parser.add_argument(
        "--costs",
        type=Path,
        help="a JSON object of per-unit costs measured on this machine (costs.py's last "
        "line) to predict with, over the time plan's own",
    )
    parser.add_argument(
        "--replan", type=Path, help="run nothing: predict the runs of this --json file again"
    )
    args = parser.parse_args(argv)
    measured = json.loads(args.costs.read_text()) if args.costs else None
    if args.replan:
        gpu = json.loads(args.replan.read_text())["gpu"]
        replan(args, plan_costs(args.ocm_resolution, gpu, measured))
        return {}

    spec = WorldSpec(args.tiles, args.dates, args.edge)
    cores = os.cpu_count() or 1
    print(
        f"box benchmark on {cores} cores: {args.tiles} MGRS tiles x {args.dates} dates", flush=True
    )
    world = generate(args.work / "world", spec, workers=cores)
    print(
        f"world: {world['bytes'] / 1e9:.1f} GB written in {world['generation_s']} s "
        f"on {world['workers']} processes",
        flush=True,
    )
    weights = args.work / "weights"
    if args.mask != "scl" and not weights.exists():
        from testworld.weights import fabricate_weights

        fabricate_weights(weights, "random")
    options = mask_options(args, weights)
    os.environ["NUMBA_CACHE_DIR"] = str(args.work / "numba")  # as the job adapter does
    os.environ["S2BASEMAP_RUNTIME_DIR"] = str(args.work)
    from s2basemap.timeplan import has_gpu

    gpu = has_gpu()
    costs = plan_costs(args.ocm_resolution, gpu, measured)
    results = {"world": world, "cores": cores, "gpu": gpu, "runs": []}
    for i, gbps in enumerate(args.gbps):
        run_dir = args.work / f"run-{gbps:g}gbps"
        shutil.rmtree(run_dir, ignore_errors=True)
        served = Served(args.work / "world", gbps)
        monitor = Monitor(served.process.pid)
        try:
            records = scenes(spec, served.url, PERIOD)
            layout = layout_of(records, spec)
            if i == 0:
                figures = stages(args, records, layout, served, monitor, run_dir, options)
            else:  # the fetch again under another cap
                records = records[: args.refetch or len(records)]
                (run_dir / "scenes").mkdir(parents=True)
                for sub in ("records", "failed"):
                    (run_dir / sub).mkdir()
                workers, _ = concurrency(cores, 1, NETWORK_SLOTS)
                jobs = [(fetch_job, (s, layout[0], str(run_dir))) for s in records]
                figures = {"fetch": run_stage("fetch", jobs, workers, monitor, served)}
            period = period_of(records, *layout)
            predicted = prediction(period, gbps, args.mask != "scl", costs, cores, gpu)
        finally:
            monitor.stop()
            served.stop()
        run = {"gbps": gbps, "stages": figures, "plan": predicted, "period": period}
        print("\n".join(report(figures, predicted, title_of(args, run, cores, gpu))), flush=True)
        results["runs"].append(run)
        if not args.keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return results


if __name__ == "__main__":
    main()
