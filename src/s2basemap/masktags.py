"""What a mask says, and what a composite job learns from a scene's mask alone: the
bits of each pixel, which scene it masks, and whether the scene is usable.

The bits live here, below every mask module (`masks`, `maskkernels`, `composite`'s
fusion), so that those stand in a line: the kernels no longer import the module that
imports them.

The mask job's statistics JSON says the same, for the metadata. Composite jobs read
the mask's tags instead, so that they list one file per scene and column (a state-sized
year has 4,600 tiles of about 30 scenes: a third file per scene was a third of the
DAG's edges) and read nothing they do not declare, as jobs that share no filesystem must.
"""

from __future__ import annotations

import rasterio

# A mask pixel is 0 where valid; each reason for being invalid sets its own bit
NODATA = 1  # a band (or SCL) is 0: outside the AOI or the swath
SCL_INVALID = 2  # SCL class in mask.scl_invalid
OCM_CLOUD = 4  # OmniCloudMask: thick cloud, thin cloud or shadow
DILATED = 8  # within mask.dilation_metres of cloud or shadow
OUTSIDE = 255  # what a mask warped onto a tile holds where the scene has no pixels

OK = "ok"
SKIPPED = "skipped"


def usability_tags(scene_id: str, status: str) -> dict:
    """The GeoTIFF tags a mask carries: its scene and whether that scene is usable."""
    return {"SCENE": scene_id, "STATUS": status}


def mask_usability(mask_tif) -> tuple[str, str]:
    """(scene id, status) from a mask's tags."""
    with rasterio.open(mask_tif) as src:
        tags = src.tags()
    return tags["SCENE"], tags["STATUS"]
