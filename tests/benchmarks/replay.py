"""Timed replay of a month: the real DAG and scheduler, jobs that take modelled time.

scale.py's no-op copy of the workflow runs each per-scene and per-tile job as an
in-process `run:` block. With `--timed`, each of those blocks sleeps for the time
the time plan's unit costs give that job (`s2basemap.timeplan.costs_for`: the
development VM's measurements, the H200 box's where measured, OmniCloudMask's
inference on an H100 taken 3.2x slower for an A100), on a clock 1/`scale` times
faster than real time:

- fetch_scene: its window's bytes (as the storage plan counts them) through one
  link of `gbps` shared by every fetch in flight, chunk by chunk in arrival order,
  with the job's CPU (start and decoding) spread between the chunks;
- mask_scene: its host work (start, block means, SCL combination, writing) on its
  own, and the inference under one lock: the shared model process runs one scene
  at a time on the device;
- composite_column: its start, and its share of the month's composite CPU (each
  scene's window spread evenly over the tiles it touches) over the cores one
  column job keeps busy;
- scene_summary, assemble_mosaic, period_metadata: a job start each, and the
  month's products at the plan's wall seconds per output megapixel.

Other jobs (gates, markers, uploads) take no time, as in the plan. Each job's
slot on the machine is what the workflow declares (threads, gpu_slots, network)
and the profile allows: that is what the replay tests against the plan's way of
combining stages. CPU contention beyond those declarations is not modelled.

Simulation only: never imported by the workflow.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

CHUNK_BYTES = 16 * 2**20
KEY_WILDCARDS = ("period", "scene", "column")  # a month's products also have {dates}


def job_key(rule: str, wildcards: dict) -> str:
    return "|".join([rule, *(f"{k}={wildcards[k]}" for k in KEY_WILDCARDS if k in wildcards)])


def job_costs(work: Path, plan: dict, config: dict, uses_ocm: bool) -> dict[str, dict]:
    """Each timed job's modelled work: network bytes, CPU seconds spread over its
    transfers, host seconds around its inference and GPU seconds."""
    from s2basemap.aoi import read_aoi
    from s2basemap.grid import output_grid
    from s2basemap.manifest import scenes_by_tile
    from s2basemap.storage import scene_network_bytes
    from s2basemap.timeplan import (
        COMPOSITE_THREADS,
        GPU_OCM_S_PER_MPX,
        Machine,
        composite_cpu_s,
        costs_for,
    )

    machine = Machine(**plan["time"]["machine"])
    costs = costs_for(machine.gpu)
    start = costs["job_start_s"]
    aoi = read_aoi(config["aoi"])
    grid = output_grid(aoi, config["target"]["crs"], (10.0, 10.0), config["target"]["tile_size"])
    footprints = {t: grid.tile_footprint_4326(t) for t in grid.tile_ids(aoi.in_crs(grid.crs))}
    mask_per_mpx = costs["mask_cpu_s_per_mpx"]
    gpu_per_mpx = 0.0
    if uses_ocm and machine.gpu:
        mask_per_mpx += costs["ocm_host_cpu_s_per_mpx"]
        gpu_per_mpx = costs.get("gpu_ocm_s_per_mpx", GPU_OCM_S_PER_MPX)
    elif uses_ocm:
        mask_per_mpx += costs["ocm_cpu_s_per_mpx"] / costs["ocm_cpu_threads_busy"] / 2
    column_cores = min(COMPOSITE_THREADS, costs["composite_cores_busy_per_job"])
    jobs = {}
    for period, totals in plan["periods"].items():
        if not totals["scenes"]:
            continue
        sizes = json.loads((work / period / "sizes.json").read_text())["scenes"]
        manifest = json.loads((work / period / "manifest.json").read_text())
        for scene, size in sizes.items():
            mpx = size["window_pixels"] / 1e6
            wildcards = {"period": period, "scene": scene}
            jobs[job_key("fetch_scene", wildcards)] = {
                "network_bytes": scene_network_bytes(size),
                "cpu_s": start + mpx * costs["fetch_cpu_s_per_mpx"],
            }
            jobs[job_key("mask_scene", wildcards)] = {
                "host_s": start + mpx * mask_per_mpx,
                "gpu_s": mpx * gpu_per_mpx,
            }
        tiles_of: dict[str, int] = {}
        by_tile = scenes_by_tile(manifest, footprints)
        for scenes in by_tile.values():
            for scene in scenes:
                tiles_of[scene] = tiles_of.get(scene, 0) + 1
        column_mpx: dict[str, float] = {}
        for tile, scenes in by_tile.items():
            column = tile.split("_")[1]
            share = sum(sizes[s]["window_pixels"] / 1e6 / tiles_of[s] for s in scenes)
            column_mpx[column] = column_mpx.get(column, 0.0) + share
        # each column's share of the period's composite work, fused as the plan fuses it
        fused = composite_cpu_s(totals, costs) / max(totals["window_pixels"] / 1e6, 1e-9)
        for column, mpx in column_mpx.items():
            cpu = costs["composite_job_start_s"] + mpx * fused
            jobs[job_key("composite_column", {"period": period, "column": column})] = {
                "host_s": cpu / column_cores
            }
        products = totals["output_pixels"] / 1e6 * costs["outputs_wall_s_per_mpx"]
        for rule, seconds in (
            ("scene_summary", start),
            ("assemble_mosaic", start + products),
            ("period_metadata", start),
        ):
            jobs[job_key(rule, {"period": period})] = {"host_s": seconds}
    return jobs


class Replay:
    """The running jobs' shared machine: one network link, one GPU, a scaled clock."""

    def __init__(self, costs: dict[str, dict], scale: float, gbps: float):
        self.costs, self.scale = costs, scale
        self.seconds_per_byte = 8 / (gbps * 1e9)
        self.link = threading.Lock()
        self.link_free = 0.0  # monotonic time at which the link has sent what it was given
        self.gpu = threading.Lock()

    @classmethod
    def from_environment(cls) -> Replay | None:
        path = os.environ.get("S2BASEMAP_REPLAY_COSTS")
        if not path:
            return None
        spec = json.loads(Path(path).read_text())
        return cls(spec["jobs"], spec["scale"], spec["gbps"])

    def sleep(self, modelled_s: float) -> None:
        if modelled_s > 0:
            time.sleep(modelled_s * self.scale)

    def transfer(self, nbytes: float) -> None:
        """Send `nbytes` over the shared link: each chunk waits for those queued before it."""
        with self.link:
            now = time.monotonic()
            self.link_free = max(self.link_free, now) + nbytes * self.seconds_per_byte * self.scale
            done = self.link_free
        time.sleep(max(0.0, done - time.monotonic()))

    def run(self, rule: str, wildcards: dict) -> None:
        cost = self.costs.get(job_key(rule, wildcards))
        if cost is None:
            return
        network = cost.get("network_bytes", 0.0)
        chunks = max(1, int(network // CHUNK_BYTES))
        for _ in range(chunks if network else 0):
            self.transfer(network / chunks)
            self.sleep(cost["cpu_s"] / chunks)
        if not network:
            self.sleep(cost.get("cpu_s", 0.0))
        host = cost.get("host_s", 0.0)
        self.sleep(host / 2)
        if cost.get("gpu_s"):
            with self.gpu:
                self.sleep(cost["gpu_s"])
        self.sleep(host / 2)
