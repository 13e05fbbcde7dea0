"""Acquisitions: one datatake seen through the several MGRS tiles it touches, fused
into one observation per pixel before any composite method sees the stack.

Sentinel-2 delivers an acquisition as one item per MGRS tile. Tiles overlap (9.8 km
between neighbours, widely across UTM zones), and in an overlap two items show the same
ground at the same moment: counting both would count the acquisition twice, and pull
every method towards the dates seen twice, in stripes along the MGRS grid.

The rule, per acquisition and pixel: the acquisition's scenes whose mask there says
neither nodata nor outside take part; the one whose tile centre is nearest the pixel
centre (distance in the output CRS) wins, ties to the smaller scene id; its mask says
whether the observation is valid and its values are the observation. The fusion runs
in `s2basemap.fusion`; this module is what the search records and the composite
jobs read of it, and imports nothing of the masks.
"""

from __future__ import annotations

import re
from functools import lru_cache

# s2:datatake_id ends in the processing baseline (`GS2A_20240419T090601_046093_N05.10`):
# reprocessings of one acquisition differ only there
BASELINE_SUFFIX = re.compile(r"_N\d{2}\.\d{2}$")
PLATFORM_IN_ID = re.compile(r"^(S2[A-D])_")
TEN_METRE_ASSETS = ("red", "green", "blue", "nir")  # Earth Search's keys


def acquisition_of(record: dict) -> str:
    """The acquisition a manifest scene belongs to: `s2:datatake_id` without its baseline,
    else platform + relative orbit + UTC day, else the scene alone."""
    datatake = record.get("datatake_id")
    if datatake:
        return BASELINE_SUFFIX.sub("", datatake)
    platform = record.get("platform") or _platform_in_id(record["id"])
    orbit = record.get("relative_orbit")
    if platform and orbit is not None:
        return f"{platform.upper()}_{record['datetime'][:10]}_R{int(orbit):03d}"
    return record["id"]


def recorded_acquisition(record: dict) -> str:
    """The manifest scene's acquisition, as recorded or, in manifests written before
    acquisitions were, as `acquisition_of` derives it."""
    return record.get("acquisition") or acquisition_of(record)


def _platform_in_id(scene_id: str) -> str | None:
    match = PLATFORM_IN_ID.match(scene_id)
    return match[1] if match else None


def platform_of(properties: dict, item_id: str) -> str | None:
    """S2A, S2B, ... from the item's `platform` (`sentinel-2a`) or its id."""
    platform = properties.get("platform") or ""
    if platform.lower().startswith("sentinel-2") and len(platform) == len("sentinel-2a"):
        return f"S2{platform[-1].upper()}"
    return _platform_in_id(item_id)


def tile_extent(item: dict, crs: str | None, keys=TEN_METRE_ASSETS) -> dict | None:
    """The item's MGRS tile in its native CRS, {"crs", "bounds"}, from a 10 m asset's
    (`keys`)
    `proj:transform` and `proj:shape`, else `proj:bbox`; None where the item says neither.

    Not the item's `bbox`, which is the data's footprint: a tile at a swath edge would
    move its centre, and the rule must not depend on the acquisition's clouds or swath.
    """
    if crs is None:
        return None
    assets = item.get("assets", {})
    for key in keys:
        asset = assets.get(key, {})
        transform, shape = asset.get("proj:transform"), asset.get("proj:shape")
        if transform and shape:
            a, _, c, _, e, f = transform[:6]
            height, width = shape
            xs, ys = (c, c + a * width), (f, f + e * height)
            return {"crs": crs, "bounds": [min(xs), min(ys), max(xs), max(ys)]}
    for holder in [*(assets.get(k, {}) for k in keys), item.get("properties", {})]:
        if holder.get("proj:bbox"):
            return {"crs": crs, "bounds": list(holder["proj:bbox"])}
    return None


def scene_facts(record: dict) -> dict:
    """What a composite job needs of a manifest scene to fuse it: its acquisition, its
    datetime and its tile extent. Manifests written before acquisitions were recorded
    lack the last two fields: the acquisition comes from the datatake or orbit, the
    extent from the item's bbox (the data's footprint, in EPSG:4326)."""
    extent = record.get("tile_extent") or {"crs": "EPSG:4326", "bounds": record["bbox"]}
    return {
        "acquisition": recorded_acquisition(record),
        "datetime": record["datetime"],
        "extent": extent,
    }


def centre_in(extent: dict, crs) -> tuple[float, float]:
    """The extent's centre, transformed into `crs` (the output grid's)."""
    left, bottom, right, top = extent["bounds"]
    x, y = _transformer(str(extent["crs"]), str(crs)).transform(
        (left + right) / 2, (bottom + top) / 2
    )
    return float(x), float(y)


@lru_cache(maxsize=32)
def _transformer(source: str, target: str):
    from pyproj import Transformer

    return Transformer.from_crs(source, target, always_xy=True)
