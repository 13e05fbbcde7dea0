"""What a composite job learns from a scene's mask alone: which scene it masks, and
whether the scene is usable.

The mask job's statistics JSON says the same, for the metadata. Composite jobs read
the mask's tags instead, so that they list one file per scene and column (a state-sized
year has 4,600 tiles of about 30 scenes: a third file per scene was a third of the
DAG's edges) and read nothing they do not declare, as jobs that share no filesystem must.
"""

from __future__ import annotations

import rasterio

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
