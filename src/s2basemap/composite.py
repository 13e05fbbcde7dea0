"""Composite one output tile: warp every overlapping scene and its mask onto the
tile grid, then take the per-pixel percentile of the valid observations.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.features import geometry_mask
from rasterio.vrt import WarpedVRT

from s2basemap.aoi import AOI
from s2basemap.atomic import atomic_path
from s2basemap.grid import OutputGrid
from s2basemap.percentile import percentile_composite

log = logging.getLogger(__name__)

# Scene files hold blue, green, red, nir, scl; products are red, green, blue, nir.
SCENE_TO_PRODUCT = [2, 1, 0, 3]
PRODUCT_BANDS = ("Red", "Green", "Blue", "NIR")
MASK_OUTSIDE = 255  # what the warped mask holds where the scene has no pixels
# GDAL approximates the reprojection to 1/8 pixel by default, which moves
# nearest-neighbour picks; this tolerance makes it transform (almost) every
# pixel exactly. (rasterio 1.4 fails on tolerance=0.)
EXACT = 1e-6


@dataclass(frozen=True)
class SceneInput:
    id: str
    tif: str
    mask: str


def warp(path: str, grid: OutputGrid, tile_id: str, resampling: Resampling, nodata: int,
         indexes) -> np.ndarray:
    """Read `path` onto the tile grid with an exact per-pixel transformation."""
    _, _, height, width = grid.tile_window(tile_id)
    with rasterio.open(path) as src, WarpedVRT(
        src, crs=grid.crs, transform=grid.tile_transform(tile_id), width=width, height=height,
        resampling=resampling, nodata=nodata, src_nodata=src.nodata if src.nodata is not None else None,
        warp_mem_limit=256, tolerance=EXACT,
    ) as vrt:
        return vrt.read(indexes)


def stack_tile(scenes: list[SceneInput], grid: OutputGrid, tile_id: str, aoi: AOI,
               resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
    """(N, 4, H, W) uint16 reflectance in scene band order and (N, H, W) validity."""
    _, _, height, width = grid.tile_window(tile_id)
    values = np.zeros((len(scenes), 4, height, width), dtype=np.uint16)
    valid = np.zeros((len(scenes), height, width), dtype=bool)
    inside = geometry_mask([aoi.in_crs(grid.crs)], out_shape=(height, width),
                           transform=grid.tile_transform(tile_id), invert=True)
    for i, scene in enumerate(scenes):
        values[i] = warp(scene.tif, grid, tile_id, resampling, 0, [1, 2, 3, 4])
        mask = warp(scene.mask, grid, tile_id, Resampling.nearest, MASK_OUTSIDE, 1)
        valid[i] = (mask == 0) & (values[i] > 0).all(axis=0) & inside
        log.info("%s: %d valid pixels in tile %s", scene.id, int(valid[i].sum()), tile_id)
    return values, valid


def composite_tile(scenes: list[SceneInput], grid: OutputGrid, tile_id: str, aoi: AOI,
                   percentile: float, resampling: str, out_path, backend: str = "auto") -> dict:
    """Write the tile's composite (Red, Green, Blue, NIR, count) and return its statistics."""
    values, valid = stack_tile(scenes, grid, tile_id, aoi, Resampling[resampling])
    (composite, count), used = percentile_composite(values, valid, percentile, backend)
    _, _, height, width = grid.tile_window(tile_id)
    profile = {"driver": "GTiff", "dtype": "uint16", "count": 5, "width": width, "height": height,
               "crs": grid.crs, "transform": grid.tile_transform(tile_id), "nodata": 0,
               "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "zstd",
               "predictor": 2}
    with atomic_path(out_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(composite[SCENE_TO_PRODUCT], [1, 2, 3, 4])
        dst.write(count, 5)
        for i, name in enumerate((*PRODUCT_BANDS, "count"), start=1):
            dst.set_band_description(i, name)
    covered = int((count > 0).sum())
    log.info("tile %s: %d scenes, percentile %g on %s, %d of %d pixels covered", tile_id,
             len(scenes), percentile, used, covered, count.size)
    return {"tile": tile_id, "scenes": len(scenes), "backend": used, "covered_pixels": covered}
