"""Fabricate the fetched scene rasters and masks that one output tile composites.

Each scene is written exactly as the fetch and mask stages write theirs (same
profiles: zstd, predictor 2, 512 px tiles), in its UTM zone's 10 m lattice,
with its window origin shifted by a whole number of pixels from scene to scene
as the AOI windows of different MGRS tiles are. Pixels are a smooth field plus
noise (so they compress like reflectance), with a nodata edge and cloud blobs.
"""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import rasterio
from affine import Affine
from rasterio.warp import transform_bounds

from s2basemap.composite import SceneInput
from s2basemap.fetch import scene_profile
from s2basemap.masks import mask_profile

RES = 10.0


def utm_window(bounds, crs: str, epsg: int, margin: int, phase: float = 0.0):
    """(transform, height, width) of a 10 m lattice window covering `bounds` (in `crs`)."""
    left, bottom, right, top = transform_bounds(crs, f"EPSG:{epsg}", *bounds, densify_pts=101)
    x0 = (math.floor(left / RES) - margin) * RES + phase
    y0 = (math.ceil(top / RES) + margin) * RES + phase
    width = math.ceil((right - x0) / RES) + margin
    height = math.ceil((y0 - bottom) / RES) + margin
    return Affine(RES, 0, x0, 0, -RES, y0), height, width


def smooth_field(rng, height: int, width: int, low: int, high: int) -> np.ndarray:
    coarse = rng.random((height // 32 + 2, width // 32 + 2))
    field = np.kron(coarse, np.ones((32, 32)))[:height, :width]
    noisy = low + (high - low) * field + rng.normal(0, 40, (height, width))
    return np.clip(noisy, 1, 65535).astype(np.uint16)


def write_scene(
    root: Path, name: str, epsg: int, transform: Affine, height: int, width: int, rng
) -> SceneInput:
    """One scene raster (blue, green, red, nir, scl) and its mask (0 valid, bits invalid)."""
    bands = np.stack(
        [smooth_field(rng, height, width, 300, 3000 + 800 * b) for b in range(4)]
        + [np.full((height, width), 4, dtype=np.uint16)]
    )
    rows, cols = np.mgrid[0:height, 0:width]
    edge = rng.uniform(0.1, 0.4)
    swath = rows * rng.uniform(0.2, 1.0) + cols < edge * width  # a diagonal swath edge
    bands[:, swath] = 0
    bands[int(rng.integers(4)), rows[:, :1].ravel() % 97 == 3, :5] = 0  # a band missing alone
    mask = np.zeros((height, width), dtype=np.uint8)
    for _ in range(6):  # cloud blobs
        cy, cx, radius = rng.integers(0, height), rng.integers(0, width), rng.integers(20, 200)
        mask[(rows - cy) ** 2 + (cols - cx) ** 2 < radius**2] |= 4
    mask[swath] |= 1
    grid = SimpleNamespace(crs=f"EPSG:{epsg}", window_transform=lambda window: transform)
    profile = scene_profile(grid, SimpleNamespace(width=width, height=height))
    tif, mask_tif = root / f"{name}.tif", root / f"{name}_mask.tif"
    with rasterio.open(tif, "w", **profile) as dst:
        dst.write(bands)
    with rasterio.open(mask_tif, "w", **mask_profile(profile)) as dst:
        dst.write(mask, 1)
    return SceneInput(name, str(tif), str(mask_tif))


def write_tile_scenes(
    root: Path,
    tile_bounds,
    tile_crs: str,
    per_zone: int,
    zones=(32615, 32616),
    seed: int = 0,
    margin: int = 24,
    phases=(0.0,),
) -> list[SceneInput]:
    """`per_zone` scenes in each UTM zone covering the tile, at varied whole-pixel origins.

    `phases` (metres) puts scenes on further lattices of the same zone.
    """
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    scenes = []
    for epsg in zones:
        for k in range(per_zone):
            phase = phases[k % len(phases)]
            transform, height, width = utm_window(tile_bounds, tile_crs, epsg, margin, phase)
            shift_rows, shift_cols = (int(v) for v in rng.integers(-margin // 2, margin // 2, 2))
            transform = transform * Affine.translation(shift_cols, shift_rows)
            height += int(rng.integers(-margin // 2, margin // 2))
            scenes.append(
                write_scene(root, f"S2_{epsg}_{k:02d}", epsg, transform, height, width, rng)
            )
    return scenes
