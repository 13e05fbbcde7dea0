"""Masking throughput: OmniCloudMask at 10 m vs 20 m inference on the same scene.

Runs omnicloudmask's own code with fabricated v4 weights (the real architecture,
random parameters: the same compute as the real model). Not part of the test run:

    python tests/benchmarks/bench_masking.py [--size 2048] [--repeats 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from s2basemap.ocm import OCMOptions, choose_device, predict
from testworld.weights import fabricate_weights


def synthetic_scene(size: int) -> np.ndarray:
    """Red, green, NIR DNs with smooth land, bright clouds and a nodata corner."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:size, 0:size] / size
    land = 0.5 + 0.5 * np.sin(xx * 17) * np.cos(yy * 13)
    scene = np.stack([400 + 800 * land, 560 + 520 * land, 2100 + 1700 * (1 - land)])
    cloud = np.hypot(xx - 0.3, yy - 0.6) < 0.12
    scene[:, cloud] += 3500
    scene += rng.normal(0, 25, scene.shape)
    scene[:, xx + yy > 1.8] = 0
    return np.clip(scene, 0, 65535).astype(np.uint16)


def timed(array, options, repeats) -> float:
    predict(array, options)  # warm-up: model load, allocator
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        predict(array, options)
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="scene edge in 10 m pixels")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    device, dtype = choose_device("auto")
    scene = synthetic_scene(args.size)
    with tempfile.TemporaryDirectory() as tmp:
        weights = fabricate_weights(Path(tmp) / "random", "random")
        base = OCMOptions(weights_dir=str(weights))
        at_10 = timed(scene, OCMOptions(**{**vars(base), "inference_resolution": 10}), args.repeats)
        at_20 = timed(scene, base, args.repeats)
    mpix = args.size**2 / 1e6
    print(
        f"device {device.type} ({dtype}), scene {args.size} x {args.size} px at 10 m "
        f"({mpix:.2f} Mpixel), patch {base.patch_size}, overlap {base.patch_overlap}, "
        f"batch {base.batch_size}, best of {args.repeats}"
    )
    print(f"OmniCloudMask at 10 m: {at_10:8.2f} s  ({mpix / at_10:.3f} Mpixel/s of scene)")
    print(f"OmniCloudMask at 20 m: {at_20:8.2f} s  ({mpix / at_20:.3f} Mpixel/s of scene)")
    print(f"speed-up of 20 m over 10 m: {at_10 / at_20:.2f}x")


if __name__ == "__main__":
    main()
