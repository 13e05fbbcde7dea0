"""Benchmarks, each against a baseline measured in the same run on the same data.

    python tests/benchmarks/bench.py                 # everything
    python tests/benchmarks/bench.py kernel masking  # some sections

kernel    the CPU percentile kernel vs np.nanpercentile (the reference system's
          CPU path) on N = 20 and 40 observations, 4 bands, 1024 x 1024 px,
          ~40 % invalid; with a GPU also the CUDA kernel vs a sort-based cupy
          baseline (the reference's GPU path) on 2048 x 2048 px, 40 observations
masking   OmniCloudMask per scene: this workflow's defaults vs the reference
          system's settings (10 m, patch 393, overlap 196, batch 96), same
          weights (fabricated v4 architecture: the real compute)
composite one 2048 x 2048 output tile (EPSG:5070) from 30 scenes in UTM zones 15 and
          16: the previous per-scene exact GDAL warp (one scene after another)
          vs index maps shared per source grid with threaded reads; identical
          output asserted; wall and CPU time
fusion    the composite section's tile and 30 scenes, paired into 15 acquisitions of a
          zone 15 and a zone 16 tile: every scene an observation (as before) vs one
          observation per acquisition and pixel; wall, CPU, observation-pixels
maskjobs  the mask stage over 20 scenes of 1024 x 1024 px as real Snakemake jobs
          (workflow/scripts/mask_scene.py): each job loading the model (the
          previous layout, one job at a time) vs jobs sending their scene to the
          shared model process (one, or two, at a time); fixed cost per scene =
          (stage wall - Snakemake's own start-up - 20 x the warm inference time
          measured in this run) / 20. Laid out for this 2-core machine.
workflow  the whole workflow on the test world: wall time and peak memory
products  the mosaic and count COGs and the quicklook of a 16 x 16 grid of 2048 px tiles
          (--product-tiles) from column composites written as today vs as before
          (zstd level 9, predictor 2, pixel-interleaved; the COG driver's scratch
          overviews at GDAL's default zstd level 9); same pixels, wall and CPU
methods   the pixel-consistent composites (s2basemap.methods) on one stack of
          2048 x 2048 px, N = 40, 4 bands, ~40 % invalid: pick (brightness, 25)
          and medoid on the CPU vs the percentile kernel at 25 in the same run
          (best of 3 after a warm-up call); with a GPU also the CUDA kernels
Not part of the test run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS))

from s2basemap.ocm import OCMOptions, choose_device, predict
from s2basemap.percentile import gpu_available, percentile_cpu

PERCENTILE = 25
SECTIONS = [
    "kernel",
    "masking",
    "composite",
    "fusion",
    "maskjobs",
    "workflow",
    "methods",
    "products",
]


def stack(n_obs: int, edge: int, invalid: float = 0.4, seed: int = 0):
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 10000, (n_obs, 4, edge, edge), dtype=np.uint16)
    valid = rng.random((n_obs, edge, edge)) >= invalid
    return values, valid


def best_of(repeats: int, func, *args) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        func(*args)
        best = min(best, time.perf_counter() - started)
    return best


def nanpercentile_baseline(values, valid, rows: int):
    """The reference's CPU path on the first `rows` rows: float32 with NaN, np.nanpercentile."""
    part = values[:, :, :rows].astype(np.float32)
    part[~np.broadcast_to(valid[:, None, :rows], part.shape)] = np.nan
    started = time.perf_counter()
    with np.errstate(all="ignore"):
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            result = np.nanpercentile(part, PERCENTILE, axis=0)
    return time.perf_counter() - started, result


def bench_kernel() -> None:
    print("== percentile kernel (CPU, numba) vs np.nanpercentile ==")
    print(
        f"percentile {PERCENTILE}, 4 bands, 1024 x 1024 px, ~40 % invalid; "
        "values = observations x bands x pixels; best of 5"
    )
    for n_obs in (20, 40):
        values, valid = stack(n_obs, 1024)
        percentile_cpu(values[:, :, :4], valid[:, :4], PERCENTILE)  # compile
        seconds = best_of(5, percentile_cpu, values, valid, PERCENTILE)
        read = best_of(5, lambda v: v.max(axis=0), values)
        rows = 8
        base_seconds, base = nanpercentile_baseline(values, valid, rows)
        ours = percentile_cpu(values[:, :, :rows], valid[:, :rows], PERCENTILE)[0]
        same = np.array_equal(ours, np.where(np.isnan(base), 0, np.rint(base)).astype(np.uint16))
        rate = values.size / seconds / 1e6
        base_rate = values[:, :, :rows].size / base_seconds / 1e6
        print(
            f"N={n_obs}: kernel {seconds * 1e3:7.1f} ms = {rate:7.0f} Mvalues/s | "
            f"np.nanpercentile {base_rate:6.2f} Mvalues/s (on {rows} rows) | "
            f"kernel / nanpercentile = {rate / base_rate:6.0f}x | "
            f"reading the stack (max over N) {values.size / read / 1e6:6.0f} Mvalues/s | "
            f"identical to numpy: {same}"
        )
    if gpu_available():
        bench_gpu()
    else:
        print("GPU: no cupy/CUDA device here; GPU kernel not measured")


def bench_gpu() -> None:
    import cupy

    from s2basemap.percentile import percentile_cpu as cpu
    from s2basemap.percentile import percentile_on_device

    print("== percentile kernel (GPU, cupy RawKernel) vs sort-based cupy ==")
    values, valid = stack(40, 2048)
    d_values, d_valid = cupy.asarray(values), cupy.asarray(valid)

    def timed(func, repeats=20):
        func()
        cupy.cuda.Device().synchronize()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(repeats):
            start.record()
            func()
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end))
        return float(np.median(times))

    fast_ms = timed(lambda: percentile_on_device(d_values, d_valid, PERCENTILE))

    def sort_baseline():
        f = d_values.astype(cupy.float32)
        f[~cupy.broadcast_to(d_valid[:, None], f.shape)] = cupy.inf
        order = cupy.argsort(f, axis=0)  # int64 index arrays, as the reference
        ordered = cupy.take_along_axis(f, order, axis=0)
        n = d_valid.sum(axis=0)
        index = (n - 1).clip(0) * (PERCENTILE / 100.0)
        lo = cupy.floor(index).astype(cupy.int64)
        hi = cupy.minimum(lo + 1, (n - 1).clip(0))
        a = cupy.take_along_axis(ordered, lo[None, None].repeat(4, 1), axis=0)[0]
        b = cupy.take_along_axis(ordered, hi[None, None].repeat(4, 1), axis=0)[0]
        return a + (b - a) * (index - lo)

    sort_ms = timed(sort_baseline, repeats=5)
    same = np.array_equal(
        percentile_on_device(d_values, d_valid, PERCENTILE)[0].get(),
        cpu(values, valid, PERCENTILE)[0],
    )
    size = values.size
    print(
        f"2048 x 2048 px, 40 observations, 4 bands ({size / 1e6:.0f} Mvalues): kernel "
        f"{fast_ms:.3f} ms = {size / fast_ms / 1e3:.0f} Mvalues/s | sort-based {sort_ms:.1f} ms | "
        f"ratio {sort_ms / fast_ms:.0f}x | identical to the CPU kernel: {same}"
    )


def bench_methods(edge: int = 2048, n_obs: int = 40, repeats: int = 3) -> None:
    from s2basemap.methods import medoid_cpu, pick_cpu

    print("== pixel-consistent methods (CPU, numba) vs the percentile kernel ==")
    print(
        f"{edge} x {edge} px, N = {n_obs}, 4 bands, ~40 % invalid; "
        f"best of {repeats} after a warm-up call"
    )
    values, valid = stack(n_obs, edge)
    warm = stack(n_obs, 8)  # compiles the same (C-ordered) signatures
    percentile_cpu(*warm, PERCENTILE)
    pick_cpu(*warm, PERCENTILE)
    medoid_cpu(*warm)
    base = best_of(repeats, percentile_cpu, values, valid, PERCENTILE)
    label = f"percentile_cpu({PERCENTILE}) (baseline)"
    print(f"{label:29s} {base:7.3f} s")
    for index in ("brightness", "ndvi-inverse"):
        seconds = best_of(repeats, pick_cpu, values, valid, PERCENTILE, index)
        label = f"pick_cpu({index}, {PERCENTILE})"
        print(f"{label:29s} {seconds:7.3f} s = {seconds / base:5.2f} x percentile")
    seconds = best_of(repeats, medoid_cpu, values, valid)
    print(
        f"{'medoid_cpu':29s} {seconds:7.3f} s = {seconds / base:5.2f} x percentile "
        f"({n_obs * (n_obs - 1) // 2} distances per pixel)"
    )
    if gpu_available():
        bench_methods_gpu(values, valid)
    else:
        print("GPU: no cupy/CUDA device here; GPU kernels not measured")


def bench_methods_gpu(values, valid) -> None:
    import cupy

    from s2basemap.methods import medoid_cpu, medoid_on_device, pick_cpu, pick_on_device
    from s2basemap.percentile import percentile_on_device

    d_values, d_valid = cupy.asarray(values), cupy.asarray(valid)

    def timed(func, repeats=10):
        func()
        cupy.cuda.Device().synchronize()
        start, end = cupy.cuda.Event(), cupy.cuda.Event()
        times = []
        for _ in range(repeats):
            start.record()
            func()
            end.record()
            end.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, end))
        return float(np.median(times))

    base = timed(lambda: percentile_on_device(d_values, d_valid, PERCENTILE))
    pick = timed(lambda: pick_on_device(d_values, d_valid, PERCENTILE, "brightness"))
    medoid = timed(lambda: medoid_on_device(d_values, d_valid), repeats=3)
    same_pick = all(
        np.array_equal(a.get(), b)
        for a, b in zip(
            pick_on_device(d_values, d_valid, PERCENTILE),
            pick_cpu(values, valid, PERCENTILE),
            strict=True,
        )
    )
    same_medoid = all(
        np.array_equal(a.get(), b)
        for a, b in zip(medoid_on_device(d_values, d_valid), medoid_cpu(values, valid), strict=True)
    )
    print(
        f"GPU (median of the on-device kernels): percentile {base:.3f} ms | pick {pick:.3f} ms "
        f"= {pick / base:.2f} x | medoid {medoid:.3f} ms = {medoid / base:.2f} x | identical "
        f"to the CPU kernels: pick {same_pick}, medoid {same_medoid}"
    )


def bench_masking(edge: int) -> None:
    from benchmarks.bench_masking import synthetic_scene

    from testworld.weights import fabricate_weights

    device, dtype = choose_device("auto")
    scene = synthetic_scene(edge)
    print("== OmniCloudMask per scene: defaults vs the reference system's settings ==")
    print(
        f"device {device.type} ({str(dtype).removeprefix('torch.')}), scene {edge} x {edge} px "
        f"at 10 m, fabricated v4 weights"
    )
    with tempfile.TemporaryDirectory() as tmp:
        weights = str(fabricate_weights(Path(tmp) / "random", "random"))
        ours = OCMOptions(weights_dir=weights)
        reference = OCMOptions(
            weights_dir=weights,
            inference_resolution=10,
            patch_size=393,
            patch_overlap=196,
            batch_size=96,
        )
        predict(scene[:, :512, :512], ours)  # warm-up: model load
        ours_s = best_of(1, predict, scene, ours)
        reference_s = best_of(1, predict, scene, reference)
    for name, options, seconds in (
        ("defaults ", ours, ours_s),
        ("reference", reference, reference_s),
    ):
        print(
            f"{name}: {options.inference_resolution} m, patch {options.patch_size}, overlap "
            f"{options.patch_overlap}, batch {options.batch_size}: {seconds:8.2f} s"
        )
    print(
        f"defaults cost {ours_s / reference_s:.3f} of the reference ({reference_s / ours_s:.1f}x faster)"
    )


def previous_composite(scenes, grid, tile_id, aoi, percentile):
    """The composite as it was: GDAL's exact warp of every scene and mask, one by one."""
    from rasterio.enums import Resampling
    from rasterio.features import geometry_mask

    from s2basemap.composite import warp
    from s2basemap.masktags import OUTSIDE as MASK_OUTSIDE

    _, _, height, width = grid.tile_window(tile_id)
    values = np.zeros((len(scenes), 4, height, width), dtype=np.uint16)
    valid = np.zeros((len(scenes), height, width), dtype=bool)
    inside = geometry_mask(
        [aoi.in_crs(grid.crs)],
        out_shape=(height, width),
        transform=grid.tile_transform(tile_id),
        invert=True,
    )
    for i, scene in enumerate(scenes):
        values[i] = warp(scene.tif, grid, tile_id, Resampling.nearest, 0, [1, 2, 3, 4])
        mask = warp(scene.mask, grid, tile_id, Resampling.nearest, MASK_OUTSIDE, 1)
        valid[i] = (mask == 0) & (values[i] > 0).all(axis=0) & inside
    return percentile_cpu(values, valid, percentile)


def timed_call(func, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = func(*args, **kwargs)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def bench_composite(threads: int) -> None:
    import os

    import rasterio
    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap.aoi import AOI
    from s2basemap.composite import composite_tile
    from s2basemap.grid import output_grid
    from testworld.stacks import write_tile_scenes

    print("== composite of one output tile: per-scene exact warp vs shared index maps ==")
    # a 20.48 km square in EPSG:5070 straddling the UTM 15N/16N boundary near 34.8 N
    aoi_5070 = box(505_000, 1_390_000, 505_000 + 20_480, 1_390_000 + 20_480)
    aoi = AOI(aoi_5070, CRS.from_epsg(5070))
    grid = output_grid(aoi, "EPSG:5070", (10.0, 10.0), tile_size=2048)
    tile_id = "0000_0000"
    with tempfile.TemporaryDirectory() as tmp:
        scenes = write_tile_scenes(
            Path(tmp) / "scenes", grid.tile_bounds(tile_id), grid.crs, per_zone=15, margin=64
        )
        size = sum(os.path.getsize(p) for s in scenes for p in (s.tif, s.mask))
        print(
            f"tile {grid.tile_window(tile_id)[2]} x {grid.tile_window(tile_id)[3]} px, "
            f"{len(scenes)} scenes (15 per zone, varied origins), {size / 1e9:.2f} GB of scene "
            f"rasters and masks on disk; percentile {PERCENTILE}; {os.cpu_count()} cores, "
            f"{threads} threads"
        )
        composite_tile(
            scenes[:2],
            grid,
            tile_id,
            aoi,
            PERCENTILE,
            "nearest",
            Path(tmp) / "warm.tif",
            backend="cpu",
            threads=threads,
        )  # numba compile
        (old, old_count), old_wall, old_cpu = timed_call(
            previous_composite, scenes, grid, tile_id, aoi, PERCENTILE
        )
        backends = ["cpu"] + (["gpu"] if gpu_available() else [])
        for backend in backends:
            out = Path(tmp) / f"{backend}.tif"
            _, wall, cpu = timed_call(
                composite_tile,
                scenes,
                grid,
                tile_id,
                aoi,
                PERCENTILE,
                "nearest",
                out,
                backend=backend,
                threads=threads,
            )
            with rasterio.open(out) as src:
                new, new_count = src.read([3, 2, 1, 4]), src.read(5)  # back to scene band order
            same = np.array_equal(new, old[[0, 1, 2, 3]]) and np.array_equal(new_count, old_count)
            assert same, "the index-map composite differs from the exact warp"
            print(
                f"previous per-scene exact warp: wall {old_wall:6.2f} s, CPU {old_cpu:6.2f} s | "
                f"index maps ({backend}): wall {wall:6.2f} s, CPU {cpu:6.2f} s | "
                f"wall {old_wall / wall:5.1f}x faster, CPU {old_cpu / cpu:5.1f}x less | "
                f"identical output: {same}"
            )


def bench_fusion(threads: int, edge: int) -> None:
    from dataclasses import replace

    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap.aoi import AOI
    from s2basemap.composite import composite_tile
    from s2basemap.grid import output_grid
    from testworld.stacks import write_tile_scenes

    print("== composite of one output tile: every scene an observation vs one per acquisition ==")
    # the composite section's tile: scenes of UTM zones 15 and 16 over the same ground,
    # here paired into acquisitions (one datatake seen by a tile of each zone), the
    # zone 15 tile's centre west of the tile and the zone 16 tile's east of it
    aoi_5070 = box(505_000, 1_390_000, 505_000 + 10 * edge, 1_390_000 + 10 * edge)
    aoi = AOI(aoi_5070, CRS.from_epsg(5070))
    grid = output_grid(aoi, "EPSG:5070", (10.0, 10.0), tile_size=edge)
    tile_id = "0000_0000"
    left, bottom, right, top = grid.tile_bounds(tile_id)
    centres = {
        32615: (left - 40_000, (bottom + top) / 2),
        32616: (right + 40_000, (bottom + top) / 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        scenes = write_tile_scenes(
            Path(tmp) / "scenes", (left, bottom, right, top), grid.crs, per_zone=15, margin=64
        )
        fused = [
            replace(
                s, acquisition=f"A{int(s.id[-2:]):02d}", centre=centres[int(s.id.split("_")[1])]
            )
            for s in scenes
        ]
        print(
            f"tile {edge} x {edge} px, {len(scenes)} scenes in 15 acquisitions of 2; percentile "
            f"{PERCENTILE}; {os.cpu_count()} cores, {threads} threads"
        )
        composite_tile(
            scenes[:2],
            grid,
            tile_id,
            aoi,
            PERCENTILE,
            "nearest",
            Path(tmp) / "warm.tif",
            backend="cpu",
            threads=threads,
        )
        figures = {}
        for name, inputs in (("every scene", scenes), ("per acquisition", fused)):
            stats, wall, cpu = timed_call(
                composite_tile,
                inputs,
                grid,
                tile_id,
                aoi,
                PERCENTILE,
                "nearest",
                Path(tmp) / f"{name}.tif",
                backend="cpu",
                threads=threads,
            )
            figures[name] = (wall, cpu, stats)
            print(
                f"{name:>16}: wall {wall:6.2f} s, CPU {cpu:6.2f} s, {stats['acquisitions']} layers, "
                f"{stats['observation_pixels'] / 1e6:.2f} M observation-pixels"
            )
        (w0, c0, s0), (w1, c1, s1) = figures.values()
        print(
            f"per acquisition / every scene: wall {w1 / w0:.2f}, CPU {c1 / c0:.2f}, "
            f"observation-pixels {s1['observation_pixels'] / s0['observation_pixels']:.2f}"
        )


MASK_JOBS_SNAKEFILE = """
SCENES = config["scenes"]

rule all:
    input:
        expand("masks/{scene}.tif", scene=SCENES),

rule mask_scene:
    input:
        scene="scenes/{scene}.tif",
        record="scenes/{scene}.json",
    output:
        mask="masks/{scene}.tif",
        stats="masks/{scene}.json",
    log:
        "logs/{scene}.log",
    threads: config["threads"]
    params:
        options=config["mask"],
        shared_process=config["shared"],
        code="bench",
    script:
        "SCRIPT"
"""


def bench_mask_jobs(n_scenes: int = 20, edge: int = 1024) -> None:
    import json
    import os

    import yaml
    from affine import Affine

    from s2basemap.masks import MaskOptions
    from testworld.stacks import write_scene
    from testworld.weights import fabricate_weights

    print(f"== mask stage: {n_scenes} scenes of {edge} x {edge} px as Snakemake jobs ==")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        weights = fabricate_weights(root / "weights", "random")
        (root / "scenes").mkdir()
        rng = np.random.default_rng(0)
        scenes = []
        for i in range(n_scenes):
            scene = write_scene(
                root / "scenes",
                f"S{i:02d}",
                32615,
                Affine(10, 0, 399960, 0, -10, 4000020),
                edge,
                edge,
                rng,
            )
            (root / "scenes" / f"S{i:02d}.json").write_text(
                json.dumps({"id": scene.id, "status": "ok", "aoi_pixels": edge * edge})
            )
            scenes.append(scene.id)
        mask = {
            "mode": "ocm+scl",
            "scl_invalid": [1, 3, 8, 9, 10, 11],
            "dilation_metres": 0,
            "ocm": {**vars(OCMOptions(weights_dir=str(weights), server_idle_seconds=30))},
        }
        inference = warm_inference_seconds(
            root / "scenes", scenes[:4], MaskOptions.from_config(mask)
        )
        import torch

        torch.set_num_threads(1)
        inference_1 = warm_inference_seconds(
            root / "scenes", scenes[:4], MaskOptions.from_config(mask)
        )
        torch.set_num_threads(2)
        script = Path(__file__).resolve().parents[2] / "workflow" / "scripts" / "mask_scene.py"
        (root / "Snakefile").write_text(MASK_JOBS_SNAKEFILE.replace("SCRIPT", str(script)))
        os.environ["S2BASEMAP_RUNTIME_DIR"] = tempfile.mkdtemp(
            prefix="s2m", dir="/tmp"
        )  # own servers
        print(
            f"warm OmniCloudMask inference of one scene on the CPU (20 m): 2 threads "
            f"{inference:.2f} s, 1 thread {inference_1:.2f} s (median of 8, in one process)"
        )
        # (name, shared process, --cores, job threads, server already running, repeats)
        layouts = (
            ("each job loads the model, 1 at a time", False, 2, 2, False, 1),
            ("shared, started by the first job, 1 at a time", True, 2, 2, False, 1),
            ("shared, already running, 1 at a time", True, 2, 2, True, 3),
            ("shared, already running, 2 in flight", True, 4, 2, True, 3),
            ("shared, model on 1 core, 2 in flight", True, 2, 1, True, 3),
        )
        fixed, per_scene = {}, {}
        for name, shared, cores, threads, warm, repeats in layouts:
            config = {"scenes": scenes, "mask": mask, "shared": shared, "threads": threads}
            # what the job adapter's layout reads (the model process's log goes to logs/)
            config |= {"work_dir": ".", "results_dir": "results", "output": {"filename_base": "b"}}
            (root / "config.yaml").write_text(yaml.safe_dump(config))
            command = [
                sys.executable,
                "-m",
                "snakemake",
                "-s",
                str(root / "Snakefile"),
                "-d",
                str(root),
                "--configfile",
                str(root / "config.yaml"),
                "--cores",
                str(cores),
                "-q",
            ]

            def stage(command=command):
                for done in (root / "masks", root / "logs"):
                    subprocess.run(["rm", "-rf", str(done)], check=True)
                return timed_call(subprocess.run, command, check=True, capture_output=True)[1]

            if warm:
                stage()  # starts the shared process (idle timeout 30 s: it stays for the next)
            wall = min(stage() for _ in range(repeats))
            _, startup, _ = timed_call(subprocess.run, command, check=True, capture_output=True)
            reference = inference if threads == 2 else inference_1
            fixed[name] = (wall - startup - n_scenes * reference) / n_scenes
            per_scene[name] = (wall - startup) / n_scenes
            reported = np.median(
                [
                    json.loads((root / "masks" / f"{scene}.json").read_text())["ocm"]["seconds"]
                    for scene in scenes
                ]
            )
            print(
                f"{name:46s}: stage {wall:6.1f} s (best of {repeats}; Snakemake start-up "
                f"{startup:4.1f} s), {(wall - startup) / n_scenes:5.2f} s per scene, fixed cost "
                f"per scene {fixed[name]:5.2f} s = {100 * fixed[name] / reference:5.1f} % of the "
                f"inference ({threads} thread(s)); the scenes' own 'ocm.seconds' median "
                f"{reported:.2f} s"
            )
        old = fixed[layouts[0][0]]
        print(
            "fixed cost per scene vs each job loading the model: "
            + ", ".join(
                f"{old / max(f, 1e-3):.1f}x lower ({n})" for n, f in list(fixed.items())[1:]
            )
        )
        alone, beside, beside_1 = (fixed[layout[0]] for layout in layouts[2:])
        print(
            f"concurrent mask jobs overlap host work: a scene's host work costs {alone:.2f} s of "
            f"stage wall one at a time, {beside:.2f} s with 2 in flight and {beside_1:.2f} s "
            f"with 2 in flight and the model on 1 core ({per_scene[layouts[4][0]]:.2f} s per "
            f"scene against {inference_1 + alone:.2f} s if it did not overlap)"
        )
        print(
            "'2 in flight' on 2 cores: the model's 2 threads share the cores with the other "
            "job's start-up, reading and writing; 'model on 1 core' gives the model one core "
            "and the rest the other, as a GPU box gives the GPU the model and the rest its "
            "spare cores. A job's 'ocm.seconds' includes loading the model when the job "
            "loads it itself."
        )


def warm_inference_seconds(directory: Path, scenes: list[str], options) -> float:
    import rasterio

    times = []
    for i, scene in enumerate(scenes * 3):
        with rasterio.open(directory / f"{scene}.tif") as src:
            red_green_nir = src.read([3, 2, 4])
        started = time.perf_counter()
        predict(red_green_nir, options.ocm)
        if i >= len(scenes):  # the first round loads the model
            times.append(time.perf_counter() - started)
    return float(np.median(times))


def bench_workflow() -> None:
    import psutil
    import yaml

    from conftest import SNAKEFILE, world_config
    from testworld import RangeServer, StacServer, build_world

    print("== the workflow on the test world (2 months, 12 scenes, masks: scl) ==")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        http = RangeServer(root / "world").start()
        world = build_world(root / "world", http.url)
        stac = StacServer(world.item_files, root / "rustac.log").wait_ready()
        world.stac_url = stac.url
        try:
            run = root / "run"
            run.mkdir()
            # the time plan for this machine: its cores, no GPU, loopback as 10 Gbit/s
            config = world_config(
                world, machine={"cores": os.cpu_count(), "gpu": False, "network_gbps": 10.0}
            )
            (run / "config.yaml").write_text(yaml.safe_dump(config))
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "snakemake",
                    "-s",
                    str(SNAKEFILE),
                    "-d",
                    str(run),
                    "--configfile",
                    str(run / "config.yaml"),
                    "--cores",
                    "2",
                    "plan",
                ],
                check=True,
                capture_output=True,
            )
            predicted = json.loads((run / "work" / "plan.json").read_text())["time"]
            started = time.perf_counter()
            proc = psutil.Popen(
                [
                    sys.executable,
                    "-m",
                    "snakemake",
                    "-s",
                    str(SNAKEFILE),
                    "-d",
                    str(run),
                    "--configfile",
                    str(run / "config.yaml"),
                    "--cores",
                    "2",
                    "-q",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            peak = 0
            while proc.poll() is None:
                try:
                    tree = [proc, *proc.children(recursive=True)]
                    peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
                except psutil.Error:
                    pass
                time.sleep(0.05)
            wall = time.perf_counter() - started
        finally:
            stac.stop()
            http.stop()
    print(
        f"exit {proc.returncode}: wall time {wall:.1f} s (after `snakemake plan`), peak memory "
        f"of the process tree {peak / 1e6:.0f} MB"
    )
    print(
        f"time plan's prediction for this machine: {predicted['total_seconds']:.1f} s "
        f"(stages {predicted['stages']}); measured / predicted = "
        f"{wall / predicted['total_seconds']:.2f}"
    )


# The column composites' GeoTIFF before 2026-12-04 (GDAL's default zstd level 9,
# predictor 2, pixel-interleaved): the baseline the products section writes beside today's.
PREVIOUS_COLUMN_PROFILE = {
    "compress": "zstd",
    "zstd_level": 9,
    "predictor": 2,
    "interleave": "pixel",
}


def _gdal_default_scratch(compress: str) -> dict:
    """The COG driver's scratch overviews as before 2026-12-04: GDAL's defaults."""
    return {}


def bench_products(tiles_per_side: int = 16) -> None:
    """The mosaic and count COGs and the quicklook from a square grid of 2048 px tiles, from
    column composites written as today vs as before (same pixels); wall and CPU time."""
    import rasterio
    from pyproj import CRS
    from shapely.geometry import box

    from s2basemap import outputs
    from s2basemap.aoi import AOI
    from s2basemap.composite import _tile_profile
    from s2basemap.grid import output_grid
    from s2basemap.outputs import assemble, quicklook

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from boxworld import reflectance

    edge = 2048 * tiles_per_side
    print(
        f"== products: mosaic, count and quicklook of {tiles_per_side} x {tiles_per_side} tiles =="
    )
    aoi = AOI(
        box(505_000, 1_390_000, 505_000 + 10 * edge, 1_390_000 + 10 * edge), CRS.from_epsg(5070)
    )
    grid = output_grid(aoi, "EPSG:5070", (10.0, 10.0), tile_size=2048)
    columns = grid.columns(grid.tile_ids(aoi.geometry))
    rng = np.random.default_rng(2)
    # one column of Collection 1-like entropy, linked as every column: realistic bytes to
    # encode without generating a gigapixel
    strip = np.stack(
        [reflectance(rng, edge, 300, 3000 + 500 * b, width=2048) for b in range(4)]
        + [np.full((edge, 2048), 9, dtype=np.uint16)]
    )
    mpx = len(columns) * strip[0].size / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        today_scratch = outputs.cog_scratch_options
        for label, extra in (("before", PREVIOUS_COLUMN_PROFILE), ("now", {})):
            # before: the former column layout and the COG driver's own scratch overviews
            outputs.cog_scratch_options = _gdal_default_scratch if extra else today_scratch
            root = Path(tmp) / label
            root.mkdir()
            first = root / "column.tif"
            profile = _tile_profile(grid, 0, 0, edge, 2048) | extra
            _, _, cpu = timed_call(_write_raster, first, profile, strip)
            pieces = {}
            for column, tiles in columns.items():
                path = root / f"{column}.tif"
                os.link(first, path)
                pieces[str(path)] = grid.column_window(tiles)
            mosaic, count = root / "mosaic.tif", root / "count.tif"
            _, a_wall, a_cpu = timed_call(assemble, grid, pieces, mosaic, count, "deflate", {})
            _, q_wall, q_cpu = timed_call(quicklook, mosaic, root / "quicklook.png")
            print(
                f"{label:>6}: column written in {cpu:.1f} CPU s ({first.stat().st_size / 1e6:.0f} MB);"
                f" mosaic and count COGs {a_wall:.1f} s wall, {a_cpu:.1f} CPU s; quicklook "
                f"{q_wall:.1f} s, {q_cpu:.1f} CPU s; products {(a_cpu + q_cpu) / mpx * 1e3:.1f} "
                f"CPU ms and {(a_wall + q_wall) / mpx * 1e3:.1f} wall ms per output megapixel",
                flush=True,
            )
            with rasterio.open(mosaic) as src:
                checksum = [src.checksum(b) for b in src.indexes]
            print(f"        mosaic checksums {checksum}", flush=True)
        _encoding_floor(Path(tmp) / "now" / "mosaic.tif", edge)


def _encoding_floor(mosaic, edge: int) -> None:
    """GDAL's own cost to encode the mosaic's and the count's first tile column (deflate,
    predictor 2, 512 px blocks, as the COGs) from memory, a third more for the overviews."""
    import rasterio
    from rasterio.windows import Window

    wall = cpu = 0.0
    for product in (mosaic, mosaic.with_name("count.tif")):
        with rasterio.open(product) as src:
            data = src.read(window=Window(0, 0, 2048, edge))
            profile = src.profile | {"driver": "GTiff", "width": 2048, "height": edge}
        profile |= {"tiled": True, "blockxsize": 512, "blockysize": 512, "num_threads": "all_cpus"}
        with tempfile.TemporaryDirectory() as tmp:
            _, w, c = timed_call(_write_raster, Path(tmp) / "floor.tif", profile, data)
        wall, cpu = wall + w, cpu + c
    mpx = data[0].size / 1e6
    print(
        f" floor: deflate alone, overviews counted, {cpu / mpx * 4 / 3 * 1e3:.1f} CPU ms and "
        f"{wall / mpx * 4 / 3 * 1e3:.1f} wall ms per output megapixel",
        flush=True,
    )


def _write_raster(path, profile, data) -> None:
    import rasterio

    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def main() -> None:
    parser = argparse.ArgumentParser(description="s2basemap benchmarks")
    # checked below: Python 3.12.1's argparse refuses an empty list against `choices`
    parser.add_argument("sections", nargs="*", help=f"some of {', '.join(SECTIONS)}; default: all")
    parser.add_argument(
        "--threads",
        type=int,
        default=os.cpu_count(),
        help="composite threads (the rule's threads:)",
    )
    parser.add_argument("--mask-edge", type=int, default=2000, help="masking scene edge (10 m px)")
    parser.add_argument("--product-tiles", type=int, default=16, help="products: tiles a side")
    parser.add_argument("--fusion-edge", type=int, default=2048, help="fusion: tile edge (px)")
    args = parser.parse_args()
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}")
    args.sections = args.sections or SECTIONS
    if "kernel" in args.sections:
        bench_kernel()
    if "masking" in args.sections:
        bench_masking(args.mask_edge)
    if "composite" in args.sections:
        bench_composite(args.threads)
    if "fusion" in args.sections:
        bench_fusion(args.threads, args.fusion_edge)
    if "maskjobs" in args.sections:
        bench_mask_jobs()
    if "workflow" in args.sections:
        bench_workflow()
    if "methods" in args.sections:
        bench_methods()
    if "products" in args.sections:
        bench_products(args.product_tiles)


if __name__ == "__main__":
    main()
