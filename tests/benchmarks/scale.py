"""State-scale benchmark: the real DAG and scheduler on a fabricated Arkansas year.

    python tests/benchmarks/scale.py                  # 1 and 12 months
    python tests/benchmarks/scale.py --months 1 --no-execute

For each month count, against the fixture in tests/statescale (rustac serve, HEAD
sizes; no pixels):
1. `snakemake plan` for real: STAC searches, HEADs, the storage and time plan;
2. `snakemake -n --profile vast`: the DAG build time;
3. execution under the vast profile (16 cores) of a copy of the workflow whose
   per-scene and per-tile jobs are in-process no-ops (the planning rules stay
   real). Its wall time is Snakemake's own overhead: scheduling, bookkeeping,
   file checks. It is set against the time plan's predicted wall time (the cost
   model in s2basemap.timeplan) for a 16-core, 1-GPU box at 1 Gb/s.
4. with `--timed SCALE`, the same execution with each job taking its modelled time
   on a clock 1/SCALE times faster (replay.py): when each stage ran and the disk it
   held, against the plan at `--gbps`.

With `--s3`, every step runs with the S3 default storage on moto on 127.0.0.1
(`--default-storage-provider s3`), as a run without a shared filesystem would, and
prints the requests the main process made to storage in each step.

This is a simulation: the no-op copy lives in a temporary directory and is never
reachable from a normal run. Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests"))

from statescale import served_state

PROFILE = REPO / "profiles" / "vast"
# planning stays real: the DAG depends on what it finds
REAL_RULES = {"prepare_aoi", "search", "scene_sizes", "plan"}

SIMULATE_SMK = '''
import json
import os
import threading as _threading
import time as _time

_SIM_LOCK = _threading.Lock()
_SIM_T0 = _time.monotonic()


_REPLAY = None
if os.environ.get("S2BASEMAP_REPLAY_COSTS"):
    import sys as _sys

    _sys.path.insert(0, os.environ["S2BASEMAP_BENCHMARKS"])
    from replay import Replay

    _REPLAY = Replay.from_environment()


def simulate_job(rule, output, wildcards):
    """Simulation only: write empty outputs and log the job (no real work; with a
    timed replay, the job's modelled time passes first)."""
    started = _time.monotonic() - _SIM_T0
    if _REPLAY is not None:
        _REPLAY.run(rule, dict(wildcards))
    for path in output:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text("{}" if str(path).endswith(".json") else "")
    with _SIM_LOCK, open(os.environ["S2BASEMAP_SIMULATION_LOG"], "a") as log:
        log.write(json.dumps({"rule": rule, "wildcards": dict(wildcards),
                              "start": started, "end": _time.monotonic() - _SIM_T0}) + "\\n")
'''


def simulation_copy(root: Path) -> Path:
    """A copy of workflow/ whose non-planning rules run `simulate_job` in-process."""
    flow = root / "workflow"
    shutil.copytree(REPO / "workflow", flow, symlinks=True)
    (root / "src").symlink_to(REPO / "src")
    for smk in (flow / "rules").glob("*.smk"):
        text = smk.read_text()
        blocks = re.split(r"(?m)^(?=(?:rule|checkpoint) )", text)
        out = []
        for block in blocks:
            name = re.match(r"(?:rule|checkpoint) (\w+):", block)
            if name and name[1] not in REAL_RULES:
                block = re.sub(r'(?m)^    conda:\n        "[^"]*"\n', "", block)
                block = re.sub(
                    r'(?m)^    script:\n        "[^"]*"\n?',
                    f'    run:\n        simulate_job("{name[1]}", output, wildcards)\n',
                    block,
                )
            out.append(block)
        smk.write_text("".join(out))
    # the run summary reads real metadata.json files; no-op jobs write none
    ops = flow / "rules" / "ops.smk"
    ops.write_text(ops.read_text().replace("    notify_summary()", "    pass"))
    (flow / "rules" / "simulate.smk").write_text(SIMULATE_SMK)
    snakefile = flow / "Snakefile"
    snakefile.write_text(
        snakefile.read_text().replace(
            'include: "rules/inputs.smk"',
            'include: "rules/inputs.smk"\ninclude: "rules/simulate.smk"',
        )
    )
    return snakefile


class Storage:
    """Where a run keeps its files: the work directory, or (`s3`) a bucket on moto whose
    requests are counted. Local copies of objects are kept, so that the plan and the
    manifests can be read back for the figures."""

    def __init__(self, s3: bool):
        self.server = None
        if s3:
            import boto3

            from testworld.servers import S3Server

            self.server = S3Server().start()
            os.environ.update(
                AWS_ACCESS_KEY_ID="scale",
                AWS_SECRET_ACCESS_KEY="scale",
                AWS_DEFAULT_REGION="us-east-1",
            )
            boto3.client("s3", endpoint_url=self.server.url).create_bucket(Bucket="scale")

    def args(self) -> list[str]:
        if self.server is None:
            return []
        return [
            "--default-storage-provider",
            "s3",
            "--default-storage-prefix",
            "s3://scale/run",
            "--storage-s3-endpoint-url",
            self.server.url,
            "--keep-storage-local-copies",
        ]

    def work(self, workdir: Path) -> Path:
        """The run's work directory as this process can read it."""
        if self.server is None:
            return workdir / "work"
        return workdir / ".snakemake" / "storage" / "s3" / "scale" / "run" / "work"

    def requests(self) -> str:
        """The requests since the last call, by method."""
        if self.server is None:
            return ""
        counts = dict(self.server.requests)
        self.server.requests.clear()
        return f"; S3 requests {sum(counts.values())} ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})"

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


STORAGE = Storage(False)


def snakemake(snakefile: Path, workdir: Path, *args: str) -> tuple[float, str]:
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "-s",
        str(snakefile),
        "-d",
        str(workdir),
        "--configfile",
        str(workdir / "config.yaml"),
        "--profile",
        str(PROFILE),
        "--cores",
        "16",
        *args,
        *STORAGE.args(),
    ]
    started = time.perf_counter()
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return wall, result.stdout + result.stderr


def state_config(
    world, months: int, workdir: Path, uploaded: bool = False, gbps: float = 1.0
) -> dict:
    """The fixture's config; `uploaded`: products go to S3 and are not kept locally
    (the upload jobs are no-ops in the simulation: the endpoint is never reached)."""
    upload = (
        {
            "enabled": True,
            "endpoint_url": "http://127.0.0.1:9",
            "bucket": "mosaics",
            "keep_local": False,
        }
        if uploaded
        else {}
    )
    return {
        "aoi": str(world.aoi_path),
        "months": world.months[:months],
        "stac": {"url": world.stac_url, "collection": "sentinel-2-l2a", "max_cloud_cover": 100},
        "target": {"crs": "EPSG:5070", "resolution": 10, "tile_size": 2048},
        "mask": {"ocm": {"weights_dir": str(workdir / "weights")}},
        "storage": {"check_free_disk": False},
        "machine": {"cores": 16, "gpu": True, "network_gbps": gbps},
        "output": {"filename_base": "Arkansas_S2_RGBNIR"},
        "upload": upload,
    }


def job_count(dry_output: str) -> int:
    match = re.search(r"^total\s+(\d+)", dry_output, re.MULTILINE)
    return int(match[1]) if match else -1


def simulated_peak(
    jobs: list[dict], workdir: Path, plan: dict, config: dict
) -> tuple[float, float]:
    """(all, work_dir) bytes on disk at their peaks over the no-op execution, from the
    plan's sizes: a scene raster and its mask from their jobs' ends until the mask and
    every composite over the scene have ended; a tile from its column's job's end until
    its month's mosaic is assembled; a month's products from then on, or until its
    upload has ended when they are not kept."""
    from s2basemap.aoi import read_aoi
    from s2basemap.grid import output_grid
    from s2basemap.manifest import scenes_by_tile
    from s2basemap.storage import SCENE_RASTER_FACTOR

    aoi = read_aoi(config["aoi"])
    grid = output_grid(aoi, config["target"]["crs"], (10.0, 10.0), config["target"]["tile_size"])
    footprints = {t: grid.tile_footprint_4326(t) for t in grid.tile_ids(aoi.in_crs(grid.crs))}
    ends = {(j["rule"], tuple(sorted(j["wildcards"].items()))): j["end"] for j in jobs}

    def end(rule, **wildcards):
        return ends[(rule, tuple(sorted(wildcards.items())))]

    events = []  # (time, bytes, under work_dir)
    for period, totals in plan["periods"].items():
        if not totals["scenes"]:
            continue
        work = STORAGE.work(workdir) / period
        sizes = json.loads((work / "sizes.json").read_text())["scenes"]
        assembled = next(
            j["end"]
            for j in jobs
            if j["rule"] == "assemble_mosaic" and j["wildcards"]["period"] == period
        )
        tile_bytes, mask_bytes = (
            totals["tile_bytes"] / totals["tiles"],
            totals["mask_bytes"] / totals["scenes"],
        )
        last_use = {}
        for tile, scenes in scenes_by_tile(
            json.loads((work / "manifest.json").read_text()), footprints
        ).items():
            done = end("composite_column", period=period, column=tile.split("_")[1])
            events += [(done, tile_bytes, True), (assembled + 1e-9, -tile_bytes, True)]
            for scene in scenes:
                last_use[scene] = max(last_use.get(scene, 0.0), done)
        for scene, size in sizes.items():
            raster = size["source_bytes"] * size["aoi_share"] * SCENE_RASTER_FACTOR
            masked = end("mask_scene", period=period, scene=scene)
            gone = max(masked, last_use.get(scene, 0.0)) + 1e-9
            events += [
                (end("fetch_scene", period=period, scene=scene), raster, True),
                (masked, mask_bytes, True),
                (gone, -raster - mask_bytes, True),
            ]
        events.append((assembled, totals["output_bytes"], False))
        if not plan["products_kept"]:
            uploaded = next(
                j["end"]
                for j in jobs
                if j["rule"] == "upload_period" and j["wildcards"]["period"] == period
            )
            events.append((uploaded + 1e-9, -totals["output_bytes"], False))
    peaks = []
    for only_work in (False, True):
        on_disk = peak = 0.0
        for _, change, in_work in sorted(events):
            on_disk += change if in_work or not only_work else 0.0
            peak = max(peak, on_disk)
        peaks.append(peak)
    return peaks[0], peaks[1]


def sweep_what_if(workdir: Path, plan: dict, config: dict) -> None:
    """What other designs would hold for each month, from the plan's sizes (no run):

    - a west-to-east sweep over columns of output tiles, a scene's raster fetched
      when the sweep is `ahead` columns before its first tile and deleted after its
      last; also with each scene fetched as one part per tile column;
    - no local scene rasters, composites reading each tile's window of each scene
      from the remote COGs: the bytes read for 1024 px source blocks (Earth Search's
      10 m blocks) at random alignment, against the plan's network bytes.
    """
    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap.aoi import WGS84, read_aoi, reproject_geometry
    from s2basemap.grid import output_grid
    from s2basemap.manifest import scenes_by_tile
    from s2basemap.storage import SCENE_RASTER_FACTOR

    aoi = read_aoi(config["aoi"])
    grid = output_grid(aoi, config["target"]["crs"], (10.0, 10.0), config["target"]["tile_size"])
    footprints = {t: grid.tile_footprint_4326(t) for t in grid.tile_ids(aoi.in_crs(grid.crs))}
    for period, totals in plan["periods"].items():
        work = STORAGE.work(workdir) / period
        manifest = json.loads((work / "manifest.json").read_text())
        sizes = json.loads((work / "sizes.json").read_text())["scenes"]
        raster = {
            k: v["source_bytes"] * v["aoi_share"] * SCENE_RASTER_FACTOR for k, v in sizes.items()
        }
        by_tile = scenes_by_tile(manifest, footprints)
        columns: dict[str, list[int]] = {}
        for tile, scenes in by_tile.items():
            for scene in scenes:
                columns.setdefault(scene, []).append(int(tile.split("_")[1]))
        last_column = max(c for cols in columns.values() for c in cols)
        kept = totals["mask_bytes"] + totals["tile_bytes"]  # bounds: masks and tiles at most
        for ahead in (0, 1, 2):
            whole = max(
                sum(raster[s] for s, cols in columns.items() if min(cols) - ahead <= c <= max(cols))
                for c in range(last_column + 1)
            )
            parts = max(
                sum(
                    raster[s] * sum(c <= col <= c + ahead for col in cols) / len(cols)
                    for s, cols in columns.items()
                )
                for c in range(last_column + 1)
            )
            print(
                f"{period} what-if sweep, {ahead} column(s) ahead: scene rasters peak "
                f"{whole / 1e9:.1f} GB whole, {parts / 1e9:.1f} GB as per-column parts "
                f"({sum(len(set(c)) for c in columns.values())} parts vs {len(columns)} scenes); "
                f"masks and tiles add at most {kept / 1e9:.1f} GB"
            )
        remote = 0.0
        by_scene = {s["id"]: s for s in manifest["scenes"]}
        for tile, scenes in by_tile.items():
            for scene in scenes:
                crs = CRS.from_user_input(by_scene[scene]["crs"])
                minx, miny, maxx, maxy = reproject_geometry(footprints[tile], WGS84, crs).bounds
                scene_box = reproject_geometry(box(*by_scene[scene]["bbox"]), WGS84, crs).bounds
                width = (min(maxx, scene_box[2]) - max(minx, scene_box[0])) / 10240
                height = (min(maxy, scene_box[3]) - max(miny, scene_box[1])) / 10240
                if width > 0 and height > 0:
                    blocks = (width + 1) * (
                        height + 1
                    )  # expected blocks touched at random alignment
                    remote += sizes[scene]["source_bytes"] * min(blocks / (10980 / 1024) ** 2, 1.0)
        print(
            f"{period} what-if remote composites: {remote / 1e9:.1f} GB of block reads vs the plan's "
            f"{totals['network_bytes'] / 1e9:.1f} GB of window reads ({remote / totals['network_bytes']:.2f}x)"
        )


def start_replay(
    path: Path, workdir: Path, plan: dict, config: dict, scale: float, gbps: float
) -> None:
    """Write the jobs' modelled costs where the simulated workflow's jobs find them."""
    from replay import job_costs

    jobs = job_costs(STORAGE.work(workdir), plan, config, uses_ocm=True)
    path.write_text(json.dumps({"jobs": jobs, "scale": scale, "gbps": gbps}))
    os.environ.update(
        S2BASEMAP_REPLAY_COSTS=str(path), S2BASEMAP_BENCHMARKS=str(Path(__file__).parent)
    )


REPLAY_STAGES = {
    "fetch": ("fetch_scene",),
    "mask": ("mask_scene",),
    "composite": ("composite_column",),
    "outputs": ("scene_summary", "assemble_mosaic", "period_metadata"),
}


def replay_report(jobs: list[dict], plan: dict, scale: float) -> None:
    """Per month and stage, when the replayed jobs ran (modelled time from the month's
    first fetch), against the time plan's stage times and total."""
    from statistics import median

    from replay import job_key

    from s2basemap.timeplan import duration

    modelled = json.loads(Path(os.environ["S2BASEMAP_REPLAY_COSTS"]).read_text())["jobs"]
    missing = set(modelled) - {job_key(j["rule"], j["wildcards"]) for j in jobs}
    if missing:
        raise RuntimeError(f"{len(missing)} modelled jobs never ran, e.g. {sorted(missing)[:3]}")
    for period, predicted in plan["time"]["periods"].items():
        mine = [j for j in jobs if j["wildcards"].get("period") == period]
        if not mine:
            continue
        t0 = min(j["start"] for j in mine if j["rule"] == "fetch_scene")
        spans = {}
        for stage, rules in REPLAY_STAGES.items():
            of_stage = [j for j in mine if j["rule"] in rules]
            spans[stage] = (
                (min(j["start"] for j in of_stage) - t0) / scale,
                (max(j["end"] for j in of_stage) - t0) / scale,
            )
        print(f"{period} timed replay (clock {1 / scale:g}x), modelled time from the first fetch:")
        for stage, (first, last) in spans.items():
            planned = predicted["stages"][stage]
            print(
                f"  {stage:>9}: {duration(first):>7} to {duration(last):>7}; the plan counts "
                f"{duration(planned['seconds'])} ({planned['bound_by']})"
            )
        ends = {
            (j["rule"], j["wildcards"].get("scene")): j for j in mine if "scene" in j["wildcards"]
        }
        waits = [
            (ends[("mask_scene", scene)]["start"] - job["end"]) / scale
            for (rule, scene), job in ends.items()
            if rule == "fetch_scene" and ("mask_scene", scene) in ends
        ]
        month = spans["outputs"][1]
        sweep = max(spans["fetch"][1], spans["mask"][1])
        print(
            f"  sweep (fetches and masks) {duration(sweep)}, the plan's "
            f"{duration(predicted['sweep_seconds'])}; then composites "
            f"{duration(spans['composite'][1] - sweep)}, the plan's last columns "
            f"{duration(predicted['last_columns_seconds'])}"
        )
        print(
            f"  month {duration(month)} against the plan's {duration(predicted['total_seconds'])} "
            f"({month / predicted['total_seconds']:.2f}x); a scene's mask started "
            f"{median(waits):.0f} s (median), {max(waits):.0f} s (most) after its fetch ended"
        )


def run(
    months: int,
    root: Path,
    execute: bool,
    uploaded: bool,
    timed: float | None = None,
    gbps: float = 1.0,
    job_log: Path | None = None,
) -> None:
    with served_state(root / "fixture", months=months) as world:
        workdir = root / f"run-{months}"
        workdir.mkdir()
        config = state_config(world, months, workdir, uploaded, gbps)
        (workdir / "config.yaml").write_text(yaml.safe_dump(config))
        snakefile = REPO / "workflow" / "Snakefile"
        plan_s, _ = snakemake(snakefile, workdir, "plan")
        plan_requests = STORAGE.requests()
        dry_s, dry = snakemake(snakefile, workdir, "-n")
        dry_requests = STORAGE.requests()
        plan = json.loads((STORAGE.work(workdir) / "plan.json").read_text())
        print(
            f"== {months} month(s): {world.items} items in the catalogue, {len(world.tiles)} "
            f"MGRS tiles, {plan['total']['scenes']} scenes, {job_count(dry)} jobs; products "
            f"{'uploaded, not kept locally' if uploaded else 'kept locally'} =="
        )
        print(
            f"snakemake plan (searches, {plan['total']['scenes'] * 5} HEADs, plan): {plan_s:6.1f} s"
            + plan_requests
        )
        print(f"snakemake -n (DAG build):                          {dry_s:6.1f} s" + dry_requests)
        print((STORAGE.work(workdir) / "plan.txt").read_text())
        if months == 1:
            sweep_what_if(workdir, plan, config)
        if not execute:
            return
        sim = simulation_copy(root / f"sim-{months}")
        os.environ["S2BASEMAP_SIMULATION_LOG"] = str(root / f"sim-{months}.jsonl")
        if timed:
            start_replay(root / "replay.json", workdir, plan, config, timed, gbps)
        # in-process no-op jobs: Snakemake spawns a whole new Snakemake for each `run:`
        # job, which real (`script:`) jobs never do; their start-up is in the time plan
        noop_s, _ = snakemake(sim, workdir, "--force-use-threads")
        lines = Path(os.environ["S2BASEMAP_SIMULATION_LOG"]).read_text().splitlines()
        jobs = [json.loads(line) for line in lines]
        predicted = plan["time"]["total_seconds"]
        print(
            f"no-op execution of the DAG under the vast profile:   {noop_s:6.1f} s "
            f"({len(jobs)} simulated jobs, DAG build included) = "
            f"{100 * noop_s / predicted:.2f} % of the predicted wall time "
            f"({predicted / 3600:.2f} h)" + STORAGE.requests()
        )
        if timed:
            replay_report(jobs, plan, timed)
        if job_log:
            shutil.copyfile(os.environ["S2BASEMAP_SIMULATION_LOG"], job_log)
        simulated, simulated_work = simulated_peak(jobs, workdir, plan, config)
        planned, planned_work = plan["total"]["peak_bytes"], plan["total"]["work_peak_bytes"]
        largest = max(p["peak_bytes"] for p in plan["periods"].values())
        largest_work = max(p["work_peak_bytes"] for p in plan["periods"].values())
        print(
            f"disk peak over the {'timed' if timed else 'no-op'} execution (the plan's sizes): {simulated / 1e9:.1f} GB; "
            f"the plan's peak: {planned / 1e9:.1f} GB ({planned / simulated - 1:+.1%}); "
            f"{planned / largest:.2f}x the largest month's planned peak ({largest / 1e9:.1f} GB)"
        )
        print(
            f"of which under work_dir: {simulated_work / 1e9:.1f} GB replayed, "
            f"{planned_work / 1e9:.1f} GB planned ({planned_work / simulated_work - 1:+.1%}); "
            f"{planned_work / largest_work:.2f}x the largest month's ({largest_work / 1e9:.1f} GB)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--months", type=int, nargs="+", default=[1, 12])
    parser.add_argument("--no-execute", action="store_true", help="plan and dry run only")
    parser.add_argument(
        "--uploaded",
        action="store_true",
        help="products uploaded and not kept locally (upload.keep_local: false)",
    )
    parser.add_argument(
        "--s3",
        action="store_true",
        help="the S3 default storage on moto (127.0.0.1), as without a shared filesystem",
    )
    parser.add_argument(
        "--timed",
        type=float,
        metavar="SCALE",
        help="jobs take their modelled time on a clock 1/SCALE times faster (replay.py)",
    )
    parser.add_argument(
        "--gbps", type=float, default=1.0, help="the planned box's network (Gbit/s)"
    )
    parser.add_argument("--job-log", type=Path, help="keep the simulated jobs' log (JSON lines)")
    args = parser.parse_args()
    global STORAGE
    STORAGE = Storage(args.s3)
    try:
        for months in args.months:
            with tempfile.TemporaryDirectory() as tmp:
                run(
                    months,
                    Path(tmp),
                    not args.no_execute,
                    args.uploaded,
                    args.timed,
                    args.gbps,
                    args.job_log,
                )
    finally:
        STORAGE.stop()


if __name__ == "__main__":
    main()
