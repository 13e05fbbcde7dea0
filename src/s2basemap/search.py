"""STAC search for one period: items over the AOI, deduplicated, as a small manifest."""

from __future__ import annotations

import logging
import re
from urllib.parse import urlsplit

import shapely
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from s2basemap.acquisitions import acquisition_of, platform_of, tile_extent
from s2basemap.periods import Period
from s2basemap.sources import SOURCES, Source, source_of

log = logging.getLogger(__name__)

BANDS = ("blue", "green", "red", "nir", "scl")
REFLECTANCE_BANDS = ("blue", "green", "red", "nir")
MANIFEST_VERSION = 1


class SearchError(RuntimeError):
    """The STAC API could not be searched; the message names the URL and the cause."""


class SceneRecordError(ValueError):
    """An item lacks what a scene needs (for example an asset); the item is left out."""


def search_items(
    url: str,
    collection: str,
    geometry_4326: BaseGeometry,
    period: Period,
    timeout: float = 60,
    max_items: int | None = None,
) -> list[dict]:
    """All items (or the first `max_items`) of `collection` intersecting the geometry's
    hull within the period."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    hull = search_geometry(geometry_4326)
    try:
        client = Client.open(url, timeout=timeout)
        search = client.search(
            collections=[collection],
            intersects=mapping(hull),
            datetime=period.stac_datetime,
            max_items=max_items,
        )
        return list(search.items_as_dicts())
    except (APIError, OSError) as exc:
        raise SearchError(f"STAC search at {url} (collection {collection}) failed: {exc}") from exc


def search_geometry(geometry_4326: BaseGeometry) -> BaseGeometry:
    """Convex hulls of the AOI's parts: a small request even for detailed outlines.

    Hulls per part, not of the whole, so an AOI split at the antimeridian does
    not search the whole globe between its halves. Items are then filtered
    against the exact AOI on our side.
    """
    parts = getattr(geometry_4326, "geoms", [geometry_4326])
    return shapely.union_all([part.convex_hull for part in parts])


def tile_of(item: dict) -> str:
    """The MGRS tile id (e.g. 15SVU) from the grid/mgrs extensions or the item id."""
    props = item.get("properties", {})
    if all(k in props for k in ("mgrs:utm_zone", "mgrs:latitude_band", "mgrs:grid_square")):
        return f"{int(props['mgrs:utm_zone']):02d}{props['mgrs:latitude_band']}{props['mgrs:grid_square']}"
    if props.get("s2:mgrs_tile"):  # Planetary Computer
        return props["s2:mgrs_tile"]
    code = props.get("grid:code", "")
    if code.startswith("MGRS-"):
        return code.removeprefix("MGRS-")
    match = re.search(r"_T?(\d{2}[A-Z]{3})_", item["id"])
    if match:
        return match[1]
    raise SceneRecordError(f"item {item['id']}: no MGRS tile in its properties or id")


def native_crs_of(item: dict) -> str | None:
    props = item.get("properties", {})
    if props.get("proj:code"):
        return props["proj:code"]
    if props.get("proj:epsg"):
        return f"EPSG:{int(props['proj:epsg'])}"
    return None


def relative_orbit_of(props: dict) -> int | None:
    """The relative orbit: `sat:relative_orbit` (Planetary Computer) or the `R007` token of
    `s2:product_uri` (Earth Search, which has no `sat:relative_orbit`)."""
    if props.get("sat:relative_orbit") is not None:
        return int(props["sat:relative_orbit"])
    match = re.search(r"_R(\d{3})_", props.get("s2:product_uri") or "")
    return int(match[1]) if match else None


def scene_from_item(
    item: dict, asset_keys: dict[str, str], adapter: Source = SOURCES["earth-search-l2a"]
) -> dict:
    """The manifest record of one item: what fetching and provenance need, nothing more."""
    assets = item.get("assets", {})
    missing = [
        f"{band} (asset '{asset_keys[band]}')" for band in BANDS if asset_keys[band] not in assets
    ]
    if missing:
        raise SceneRecordError(f"item {item['id']}: missing {', '.join(missing)}")
    props = item["properties"]
    crs = native_crs_of(item)
    record = {
        "id": item["id"],
        "datetime": props["datetime"],
        "tile": tile_of(item),
        "crs": crs,
        "platform": platform_of(props, item["id"]),
        "assets": {band: assets[asset_keys[band]]["href"] for band in BANDS},
        "processing_baseline": props.get("s2:processing_baseline"),
        "cloud_cover": props.get("eo:cloud_cover"),
        "relative_orbit": relative_orbit_of(props),
        "datatake_id": props.get("s2:datatake_id"),
        "datastrip_id": props.get("s2:datastrip_id"),
        "updated": props.get("updated") or props.get("created"),
        "bbox": item.get("bbox") or list(shape(item["geometry"]).bounds),
        "offset": adapter.offset(props, assets[asset_keys["red"]]),
        # the MGRS tile, whose centre decides which of an acquisition's overlapping
        # tiles supplies a pixel (s2basemap.acquisitions)
        "tile_extent": tile_extent(
            item, crs, [asset_keys[b] for b in ("red", "green", "blue", "nir")]
        ),
    }
    return record | {"acquisition": acquisition_of(record)}


def unreadable_href(scene: dict) -> str | None:
    """The first band href that cannot be read anonymously by HTTP range requests, or None.

    Element 84 publishes some items before their COG conversion, with bands in the
    requester-pays JP2 archive (`s3://sentinel-s2-l2a/...jp2`) and a higher baseline
    than the readable copy (facts.md, "Items published before their COGs").
    """
    for href in scene["assets"].values():
        scheme = urlsplit(href).scheme.lower()
        if scheme not in ("http", "https") or urlsplit(href).path.lower().endswith(".jp2"):
            return href
    return None


def deduplicate(
    scenes: list[dict], source: Source = SOURCES["earth-search-l2a"]
) -> tuple[list[dict], list[dict], list[dict]]:
    """Keep one readable scene per acquisition, as the source tells acquisitions apart
    and ranks their copies; return (kept, duplicates removed, acquisitions excluded),
    the last two with their reasons.

    Unreadable copies are set aside first: keeping the newest copy would otherwise
    keep an item published before its COGs, and the month could never be made.
    """
    groups: dict[tuple, list[dict]] = {}
    for scene in scenes:
        groups.setdefault(source.acquisition_key(scene), []).append(scene)
    kept, removed, excluded = [], [], []
    for group in groups.values():
        readable = sorted(
            (s for s in group if unreadable_href(s) is None), key=source.newness, reverse=True
        )
        if readable:
            kept.append(readable[0])
            removed += [_copy_left_out(s, readable[0]) for s in group if s is not readable[0]]
        else:
            excluded += [_no_readable_copy(s) for s in group]
    kept.sort(key=lambda s: (s["datetime"], s["id"]))
    removed.sort(key=lambda r: r["id"])
    excluded.sort(key=lambda r: r["id"])
    return kept, removed, excluded


def _copy_left_out(scene: dict, kept: dict) -> dict:
    href = unreadable_href(scene)
    if href is None:
        return {"id": scene["id"], "reason": f"duplicate of {kept['id']} (older)"}
    reason = (
        f"unreadable copy ({href} cannot be read anonymously over HTTP(S)); "
        f"the readable copy {kept['id']} is kept"
    )
    return {"id": scene["id"], "reason": reason}


def _no_readable_copy(scene: dict) -> dict:
    reason = (
        f"no readable copy of this acquisition: {unreadable_href(scene)} cannot be read "
        "anonymously over HTTP(S) (an item published before its COGs?)"
    )
    return {"id": scene["id"], "reason": reason}


def build_manifest(
    items: list[dict],
    aoi_4326: BaseGeometry,
    period: Period,
    source: dict,
    asset_keys: dict[str, str],
    max_cloud_cover: float | None,
    adapter: Source = SOURCES["earth-search-l2a"],
) -> dict:
    """Filter, record and deduplicate the searched items of one period."""
    scenes, excluded = [], []
    for item in sorted(items, key=lambda i: i["id"]):
        reason = exclusion_reason(item, aoi_4326, max_cloud_cover)
        if reason is None:
            try:
                scenes.append(scene_from_item(item, asset_keys, adapter))
            except SceneRecordError as exc:
                reason = str(exc)
        if reason is not None:
            excluded.append({"id": item["id"], "reason": reason})
    kept, duplicates, unreadable = deduplicate(scenes, adapter)
    return {
        "manifest_version": MANIFEST_VERSION,
        "period": period.label,
        "start": period.start.isoformat(),
        "end": period.end.isoformat(),
        "source": source,
        "status": "ok" if kept else "no_scenes",
        "scenes": kept,
        "duplicates_removed": duplicates,
        "excluded": sorted(excluded + unreadable, key=lambda r: r["id"]),
    }


def exclusion_reason(
    item: dict, aoi_4326: BaseGeometry, max_cloud_cover: float | None
) -> str | None:
    cloud = item.get("properties", {}).get("eo:cloud_cover")
    if max_cloud_cover is not None and cloud is not None and cloud > max_cloud_cover:
        return f"eo:cloud_cover {cloud} above max_cloud_cover {max_cloud_cover}"
    geometry = item.get("geometry")
    if geometry and not shapely.intersects(shape(geometry), aoi_4326):
        return "footprint does not intersect the AOI"
    return None


def run_search(aoi, period: Period, stac: dict, manifest_path) -> dict:
    """Search one period and write its manifest; zero scenes is an outcome, not an error."""
    from s2basemap.manifest import write_manifest

    aoi_4326 = aoi.geometry_4326
    items = search_items(stac["url"], stac["collection"], aoi_4326, period, stac["timeout_seconds"])
    adapter = source_of(stac)
    source = {"name": adapter.name, "url": stac["url"], "collection": stac["collection"]}
    manifest = build_manifest(
        items, aoi_4326, period, source, stac["assets"], stac["max_cloud_cover"], adapter
    )
    for entry in manifest["duplicates_removed"] + manifest["excluded"]:
        log.info("left out %s: %s", entry["id"], entry["reason"])
    if manifest["status"] == "no_scenes":
        log.warning(
            "period %s: no scenes (%d items found, %d left out): nothing to composite",
            period.label,
            len(items),
            len(manifest["excluded"]),
        )
        if not items:
            source["elsewhere"] = items_elsewhere(adapter, stac, aoi_4326, period)
    else:
        log.info(
            "period %s: %d scenes from %d items", period.label, len(manifest["scenes"]), len(items)
        )
    write_manifest(manifest_path, manifest)
    return manifest


ELSEWHERE_LIMIT = 100


def items_elsewhere(
    adapter: Source, stac: dict, aoi_4326: BaseGeometry, period: Period
) -> list[dict]:
    """The same API's other collections that have items where ours has none, so that an
    empty month is never silent about them (up to ELSEWHERE_LIMIT items are counted)."""
    found = []
    for name in adapter.siblings:
        collection = SOURCES[name].collection
        try:
            items = search_items(
                stac["url"],
                collection,
                aoi_4326,
                period,
                stac["timeout_seconds"],
                max_items=ELSEWHERE_LIMIT,
            )
        except SearchError as exc:
            log.warning("period %s: could not ask %s for items: %s", period.label, collection, exc)
            continue
        if items:
            log.warning(
                "period %s: %s has %d%s items here (stac.source: %s)",
                period.label,
                collection,
                len(items),
                "+" * (len(items) >= ELSEWHERE_LIMIT),
                name,
            )
            found.append(
                {
                    "source": name,
                    "collection": collection,
                    "items": len(items),
                    "at_least": len(items) >= ELSEWHERE_LIMIT,
                }
            )
    return found
