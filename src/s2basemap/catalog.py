"""The series as STAC 1.1: one Item per month, built with pystac, and the Collection
that links the published months, so odc-stac, stackstac, stac-browser or titiler open
the results folder (or where it was uploaded) without opening a COG first.

Every href is relative (`./<file>` in an Item, `./<month>/item.json` and
`../collection.json` between them): the tree resolves wherever it is copied,
the results folder and the upload's prefix alike.
"""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pystac
import shapely
from pystac.extensions.projection import ProjectionExtension

# the collection job's code is this module and what it imports: keep it to atomic
from s2basemap.atomic import atomic_write_json

# pystac writes the projection extension (v2: proj:code); the bands of STAC 1.1 carry
# eo v2's common names and raster v2's scale, which pystac has no classes for yet (and
# eo v2 forbids v1's `eo:bands`, so they cannot be written beside them)
EO = "https://stac-extensions.github.io/eo/v2.0.0/schema.json"
RASTER = "https://stac-extensions.github.io/raster/v2.0.0/schema.json"
PROCESSING = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"

COG = "image/tiff; application=geotiff; profile=cloud-optimized"
GEOJSON = "application/geo+json"
LICENSE_URL = "https://sentinels.copernicus.eu/documents/247904/690755/Sentinel_Data_Legal_Notice"
ITEM_SIMPLIFY_DEGREES = 1e-5  # ~1 m: the Item's outline, not the clip, so keep it small

# product band -> (common name, centre wavelength in µm, Sentinel-2 band): Sentinel-2A's
# centres, as Earth Search's items give them
SPECTRAL = {
    "Red": ("red", 0.665, "B04"),
    "Green": ("green", 0.56, "B03"),
    "Blue": ("blue", 0.49, "B02"),
    "NIR": ("nir", 0.842, "B08"),
}


def month_item(
    metadata: dict, outline_4326, files: dict, collection: str, collection_href: str
) -> dict:
    """The STAC Item of one month, from its metadata.json: `outline_4326` is the AOI
    (shapely, WGS 84), `files` names the month's files, `collection` is the series' id
    and `collection_href` where its Collection is, relative to the Item."""
    geometry = outline_4326.simplify(ITEM_SIMPLIFY_DEGREES, preserve_topology=True)
    period = metadata["period"]
    item = pystac.Item(
        id=metadata["product"] or f"no-scenes-{period['label']}",
        geometry=json.loads(shapely.to_geojson(geometry)),
        bbox=list(geometry.bounds),
        datetime=None,
        start_datetime=datetime.fromisoformat(f"{period['start']}T00:00:00+00:00"),
        end_datetime=datetime.fromisoformat(f"{period['end']}T23:59:59+00:00"),
        properties=_properties(metadata),
        collection=collection,
    )
    item.common_metadata.created = datetime.now(UTC).replace(microsecond=0)
    _projection(item, metadata)
    # an extension's schema wants its fields: a month without scenes has no bands
    item.stac_extensions += [EO, RASTER, PROCESSING] if "mosaic" in files else [PROCESSING]
    for key, asset in _assets(metadata, files).items():
        item.add_asset(key, asset)
    for link in _links(metadata, collection_href):
        item.add_link(link)
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_month_item(
    metadata: dict, outline_4326, path, collection: str, collection_href: str
) -> dict:
    """Write the Item of the month `metadata` describes (the files it lists)."""
    item = month_item(metadata, outline_4326, metadata["files"], collection, collection_href)
    atomic_write_json(path, item)
    return item


def _properties(metadata: dict) -> dict:
    method = metadata["composite"]["description"]
    return {
        "title": f"{metadata['period']['label']}: {method}",
        "description": f"{metadata['attribution']}. Status: {metadata['status']}.",
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "license": "other",
        "processing:level": "L3",
        "processing:lineage": (
            f"Cloud-free composite of {len(metadata['scenes'])} Sentinel-2 L2A scenes: "
            f"{method}, after masking clouds and shadows ({_mask(metadata)})"
        ),
        "processing:software": metadata["software"],
    } | _gsd(metadata)


def _gsd(metadata: dict) -> dict:
    """The ground sample distance, in metres: none for a grid in degrees."""
    metric = metadata.get("resolution_unit") == "metre"
    return {"gsd": metadata["resolution"][0]} if metric else {}


MASK_MODES = {"ocm+scl": "OmniCloudMask and SCL", "scl": "SCL only", "ocm": "OmniCloudMask only"}


def _mask(metadata: dict) -> str:
    return MASK_MODES[metadata["mask"]["mode"]]


def _projection(item: pystac.Item, metadata: dict) -> None:
    """The mosaic grid, so loaders need not open a COG to learn it."""
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    epsg = metadata["crs"]["epsg"]
    if epsg is not None:
        proj.code = f"EPSG:{epsg}"
    else:
        proj.wkt2 = metadata["crs"]["wkt"]
    left, bottom, right, top = metadata["bounds"]
    res_x, res_y = metadata["resolution"]
    proj.shape = [metadata["size"]["height"], metadata["size"]["width"]]
    proj.transform = [res_x, 0.0, left, 0.0, -res_y, top]
    proj.bbox = [left, bottom, right, top]


def _band(name: str, scale: float) -> dict:
    common, centre, s2_band = SPECTRAL[name]
    return {
        "name": common,
        "description": f"{name} ({s2_band}) surface reflectance, DN * {scale}",
        "eo:common_name": common,
        "eo:center_wavelength": centre,
        "nodata": 0,
        "data_type": "uint16",
        "raster:scale": scale,
        "raster:offset": 0.0,
    }


def _asset(file: str, title: str, media_type: str, roles: list[str], **extra) -> pystac.Asset:
    return pystac.Asset(
        href=f"./{file}", title=title, media_type=media_type, roles=roles, extra_fields=extra
    )


def _assets(metadata: dict, files: dict) -> dict[str, pystac.Asset]:
    assets = {
        "metadata": _asset(
            files["metadata"], "Provenance and settings", pystac.MediaType.JSON, ["metadata"]
        )
    }
    if "mosaic" in files:
        bands = [_band(name, metadata["reflectance_scale"]) for name in metadata["bands"]]
        assets |= {
            "mosaic": _asset(
                files["mosaic"],
                f"Cloud-free mosaic: {metadata['composite']['description']}",
                COG,
                ["data"],
                bands=bands,
            ),
            "count": _asset(
                files["counts"],
                "Valid observations per pixel",
                COG,
                ["data"],
                bands=[{"name": "count", "data_type": "uint16"}],
            ),
            "thumbnail": _asset(
                files["quicklook"], "Quicklook", pystac.MediaType.PNG, ["thumbnail", "overview"]
            ),
        }
    if "date" in files:
        band = metadata["date_band"]
        assets |= {
            "date": _asset(
                files["date"],
                "Acquisition day of each pixel",
                COG,
                ["data"],
                bands=[{k: band[k] for k in ("name", "description", "nodata", "data_type")}],
            ),
            "date_picture": _asset(
                files["date_picture"],
                "Acquisition date of each pixel, with a legend",
                "image/svg+xml",
                ["overview"],
            ),
        }
    return assets


def relative_href(target, start_file) -> str:
    """`target`'s href from the document `start_file` (`./x`, `../x`): links that hold
    wherever the results are copied."""
    href = Path(os.path.relpath(target, Path(start_file).parent)).as_posix()
    return href if href.startswith("../") else f"./{href}"


def _links(metadata: dict, collection_href: str) -> list[pystac.Link]:
    source = metadata["source"]
    api = source["url"].rstrip("/")
    links = [
        pystac.Link(
            "derived_from", f"{api}/collections/{source['collection']}/items/{s['id']}", GEOJSON
        )
        for s in metadata["scenes"]
    ]
    links.append(pystac.Link("license", LICENSE_URL, "text/html", "Sentinel data legal notice"))
    return links + [
        pystac.Link(rel, collection_href, pystac.MediaType.JSON)
        for rel in ("collection", "parent", "root")
    ]


# --- the series ---------------------------------------------------------------------
def series_collection(item_paths: list, collection_path, collection_id: str) -> dict:
    """The Collection of the months whose Item has a mosaic (a month without scenes has
    none and is not listed), linked relative to where the Collection is written."""
    items = [(Path(path), json.loads(Path(path).read_text())) for path in item_paths]
    listed = [(path, item) for path, item in items if "mosaic" in item["assets"]]
    spans = [item for _, item in listed] or [item for _, item in items]
    created = sorted(item["properties"]["created"] for item in spans)
    collection = pystac.Collection(
        id=collection_id,
        title=f"{collection_id}: monthly cloud-free Sentinel-2 mosaics",
        description=(
            "Monthly cloud-free mosaics of Sentinel-2 L2A surface reflectance (red, green, "
            "blue, near infrared) made with s2basemap. Contains modified Copernicus "
            "Sentinel data."
        ),
        extent=_extent(spans),
        license="other",
        keywords=["sentinel-2", "mosaic", "cloud-free", "surface reflectance"],
        providers=[
            pystac.Provider("European Space Agency (Copernicus)", roles=["licensor", "producer"]),
            pystac.Provider("s2basemap", roles=["processor"]),
        ],
        extra_fields={"created": created[0], "updated": created[-1]} if created else {},
    )
    collection.add_link(pystac.Link("license", LICENSE_URL, "text/html"))
    root = relative_href(collection_path, collection_path)
    collection.add_link(pystac.Link("root", root, pystac.MediaType.JSON))
    for path, item in listed:
        href = relative_href(path, collection_path)
        collection.add_link(
            pystac.Link("item", href, pystac.MediaType.GEOJSON, item["properties"]["title"])
        )
    return collection.to_dict(include_self_link=False, transform_hrefs=False)


def _extent(items: list[dict]) -> pystac.Extent:
    west, south, east, north = zip(*(item["bbox"] for item in items), strict=True)
    starts = [item["properties"]["start_datetime"] for item in items]
    ends = [item["properties"]["end_datetime"] for item in items]
    return pystac.Extent(
        pystac.SpatialExtent([[min(west), min(south), max(east), max(north)]]),
        pystac.TemporalExtent(
            [[datetime.fromisoformat(min(starts)), datetime.fromisoformat(max(ends))]]
        ),
    )


def write_collection(item_paths: list, collection_path, collection_id: str) -> dict:
    collection = series_collection(item_paths, collection_path, collection_id)
    atomic_write_json(collection_path, collection)
    return collection
