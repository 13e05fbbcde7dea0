"""Per-scene invalid-pixel masks: OmniCloudMask OR SCL classes OR nodata, optionally dilated.

The mask is uint8 on the fetched scene's grid; 0 means valid, and each reason
for being invalid sets its own bit, so a user can see why a pixel was dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import rasterio
from scipy.ndimage import distance_transform_edt

from s2basemap.atomic import atomic_path
from s2basemap.masktags import DILATED, NODATA, OK, SKIPPED, usability_tags
from s2basemap.ocm import OCMOptions, predict_coarse

log = logging.getLogger(__name__)

SCL_CLOUD_AND_SHADOW = (3, 8, 9, 10)  # the SCL classes that dilation grows
MODES = ("ocm+scl", "scl", "ocm")
RED_GREEN_NIR = (2, 1, 3)  # the model's input bands in a scene raster (blue, green, red, nir, scl)


@dataclass(frozen=True)
class MaskOptions:
    mode: str = "ocm+scl"
    scl_invalid: tuple[int, ...] = (1, 3, 8, 9, 10, 11)
    dilation_metres: float = 0.0
    ocm: OCMOptions = field(default_factory=OCMOptions)

    @classmethod
    def from_config(cls, mask_config: dict) -> MaskOptions:
        return cls(
            mode=mask_config["mode"],
            scl_invalid=tuple(mask_config["scl_invalid"]),
            dilation_metres=float(mask_config["dilation_metres"]),
            ocm=OCMOptions.from_config(mask_config["ocm"]),
        )

    @property
    def uses_ocm(self) -> bool:
        return "ocm" in self.mode.split("+")

    @property
    def uses_scl(self) -> bool:
        return "scl" in self.mode.split("+")


def combine(
    bands: np.ndarray,
    scl: np.ndarray,
    ocm_classes: np.ndarray | None,
    options: MaskOptions,
    pixel_size: float,
    ocm_factor: int = 1,
) -> np.ndarray:
    """The bit mask of one scene; `ocm_classes` is None in `scl` mode, and on a grid
    `ocm_factor` times coarser than the scene's."""
    return combine_counted(bands, scl, ocm_classes, options, pixel_size, ocm_factor)[0]


def combine_counted(bands, scl, ocm_classes, options: MaskOptions, pixel_size, ocm_factor=1):
    """The bit mask, and the pixel counts its statistics need: data (not nodata), valid
    (mask 0) and cloud among the data (SCL's cloud and shadow classes in a mode with
    SCL, whatever `scl_invalid` says, and OmniCloudMask's cloud and shadow)."""
    from s2basemap.maskkernels import combine_rows

    lookup = np.zeros(max(int(scl.max(initial=0)) + 1, 256), dtype=np.bool_)
    invalid, cloudy, counted = lookup.copy(), lookup.copy(), lookup.copy()
    if options.uses_scl:
        invalid[list(options.scl_invalid)] = True
        cloudy[[c for c in SCL_CLOUD_AND_SHADOW if c in options.scl_invalid]] = True
        counted[list(SCL_CLOUD_AND_SHADOW)] = True
    use_ocm = options.uses_ocm
    ocm = ocm_classes if use_ocm else np.zeros((1, 1), dtype=np.uint8)
    mask = np.empty(scl.shape, dtype=np.uint8)
    cloud = np.empty(scl.shape, dtype=np.bool_)
    rows = combine_rows(bands, scl, ocm, ocm_factor, use_ocm, invalid, cloudy, counted, mask, cloud)
    data, valid, cloud_in_data = (int(n) for n in rows.sum(axis=0))
    if options.dilation_metres > 0 and data and cloud.any():
        mask[dilate(cloud, options.dilation_metres, pixel_size) & ~cloud] |= DILATED
        valid = int(np.count_nonzero(mask == 0))
    return mask, {"data": data, "valid": valid, "cloud": cloud_in_data}


def dilate(region: np.ndarray, metres: float, pixel_size: float) -> np.ndarray:
    """Every pixel whose centre lies within `metres` of a region pixel's centre."""
    return distance_transform_edt(~region, sampling=pixel_size) <= metres


def mask_scene(
    scene_tif, fetch_record: dict, mask_tif, options: MaskOptions, models=None, device_lock=None
) -> dict:
    """Write the scene's mask GeoTIFF and return its statistics."""
    if fetch_record["status"] != "ok":
        write_empty_mask(scene_tif, mask_tif, fetch_record["id"])
        return {
            "id": fetch_record["id"],
            "status": "skipped",
            "reason": f"fetch {fetch_record['status']}: {fetch_record.get('reason', '')}",
        }
    with rasterio.open(scene_tif) as src:
        stack = src.read()
        profile = mask_profile(src.profile)
        pixel_size = abs(src.transform.a)
    bands, scl = stack[:4], stack[4]
    ocm_classes, factor, run = None, 1, None
    if options.uses_ocm:
        ocm_classes, factor, run = predict_coarse(
            stack, options.ocm, models=models, device_lock=device_lock, channels=RED_GREEN_NIR
        )
        log.info(
            "%s: OmniCloudMask at %d m on %s (%s, batch %d) in %.1f s",
            fetch_record["id"],
            options.ocm.inference_resolution,
            run.device,
            run.dtype,
            run.batch_size,
            run.seconds,
        )
    mask, counts = combine_counted(bands, scl, ocm_classes, options, pixel_size, factor)
    with atomic_path(mask_tif) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(mask, 1)
        dst.update_tags(
            BITS="1 nodata, 2 SCL invalid class, 4 OmniCloudMask cloud/shadow, 8 dilation; 0 valid",
            MODE=options.mode,
            **usability_tags(fetch_record["id"], OK),
        )
    return statistics(fetch_record, mask.size, counts, options, run)


def statistics(fetch_record, pixels: int, counts: dict, options: MaskOptions, run) -> dict:
    aoi_pixels = int(fetch_record.get("aoi_pixels") or pixels)
    data_pixels, valid = counts["data"], counts["valid"]
    stats = {
        "id": fetch_record["id"],
        "status": "ok",
        "mode": options.mode,
        "aoi_pixels": aoi_pixels,
        "data_pixels": data_pixels,
        "valid_pixels": valid,
        "valid_fraction": round(valid / aoi_pixels, 6) if aoi_pixels else 0.0,
        "cloud_fraction": round(counts["cloud"] / data_pixels, 6) if data_pixels else 0.0,
        "scl_invalid": list(options.scl_invalid),
        "dilation_metres": options.dilation_metres,
    }
    if run is not None:
        stats["ocm"] = {
            "inference_resolution": options.ocm.inference_resolution,
            "model_version": options.ocm.model_version,
            "patch_size": options.ocm.patch_size,
            "patch_overlap": options.ocm.patch_overlap,
            **vars(run),
        }
    return stats


def mask_profile(scene_profile: dict) -> dict:
    return {
        "driver": "GTiff",
        "dtype": "uint8",
        "count": 1,
        "width": scene_profile["width"],
        "height": scene_profile["height"],
        "crs": scene_profile["crs"],
        "transform": scene_profile["transform"],
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
        "predictor": 2,
    }


def write_empty_mask(scene_tif, mask_tif, scene_id: str) -> None:
    """A placeholder scene gets a placeholder mask: every pixel nodata."""
    with rasterio.open(scene_tif) as src:
        profile = mask_profile(src.profile) | {"tiled": False}
        profile.pop("blockxsize"), profile.pop("blockysize")
    with atomic_path(mask_tif) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.full((1, profile["height"], profile["width"]), NODATA, dtype=np.uint8))
        dst.update_tags(**usability_tags(scene_id, SKIPPED))
