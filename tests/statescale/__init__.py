"""A state-sized world without pixels: an Arkansas-shaped AOI, an Earth-Search-like
catalogue for a year served by `rustac serve`, and an asset server that answers HEAD
with realistic sizes. For the scale benchmark (DAG, scheduler, plans); no GET.

Figures it mimics (checked against Earth Search's sentinel-2-l2a, 2025):
- Arkansas: about 137,700 km2, 33.0-36.5 N, 94.6-89.6 W;
- MGRS tiles: 109.8 km squares on a 100 km UTM lattice (so neighbours overlap by
  9.8 km), here in zones 15 and 16;
- two relative orbits per tile and three satellites (S2A, S2B, S2C): 12-15
  acquisitions per tile in a month;
- asset sizes: a 10 m band COG about 200 MB (deflate, 10980 x 10980 uint16), the
  20 m SCL about 4 MB.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
from pyproj import Geod, Transformer
from shapely.geometry import Polygon, box, mapping

from testworld.servers import StacServer

COLLECTION = "sentinel-2-l2a"
BANDS = {
    "blue": "B02.tif",
    "green": "B03.tif",
    "red": "B04.tif",
    "nir": "B08.tif",
    "scl": "SCL.tif",
}
TILE_EDGE = 109_800  # m
BAND_BYTES = 200e6
ZONE_OVERHANG = 0.25  # degrees
SCL_BYTES = 4e6

# The outline, clockwise from the north-west corner: the 36.5 N line, the
# Missouri bootheel notch, the Mississippi down to 33 N, the Louisiana line, the
# Red River and the Oklahoma line.
ARKANSAS_OUTLINE = [
    (-94.62, 36.50),
    (-90.15, 36.50),
    (-90.08, 36.00),
    (-89.70, 36.00),
    (-89.90, 35.40),
    (-90.10, 35.00),
    (-90.55, 34.40),
    (-91.05, 33.70),
    (-91.15, 33.00),
    (-94.04, 33.00),
    (-94.04, 33.55),
    (-94.48, 33.64),
    (-94.43, 35.39),
    (-94.62, 36.50),
]


def arkansas() -> Polygon:
    return Polygon(ARKANSAS_OUTLINE)


def area_km2(polygon: Polygon) -> float:
    return abs(Geod(ellps="WGS84").geometry_area_perimeter(polygon)[0]) / 1e6


@dataclass(frozen=True)
class Tile:
    name: str
    epsg: int
    x0: float  # upper-left corner, metres
    y0: float

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0 - TILE_EDGE, self.x0 + TILE_EDGE, self.y0

    def footprint_4326(self) -> Polygon:
        ring = np.array(box(*self.bounds).exterior.coords)
        lon, lat = Transformer.from_crs(self.epsg, 4326, always_xy=True).transform(
            ring[:, 0], ring[:, 1]
        )
        return Polygon(zip(np.round(lon, 7), np.round(lat, 7)))


def tiles_over(aoi: Polygon) -> list[Tile]:
    """The MGRS-like tiles of zones 15 and 16 that touch the AOI within their zone, or
    within ZONE_OVERHANG of it (tiles on a zone's edge reach past it)."""
    tiles = []
    for zone, (west, east) in ((15, (-96.0, -90.0)), (16, (-90.0, -84.0))):
        part = aoi.intersection(box(west - ZONE_OVERHANG, -90, east + ZONE_OVERHANG, 90))
        if part.is_empty:
            continue
        for k in range(1, 8):
            for j in range(36, 42):
                tile = Tile(
                    f"{zone}S{chr(ord('A') + k)}{chr(ord('A') + j - 20)}",
                    32600 + zone,
                    k * 100_000 - 40.0,
                    j * 100_000.0,
                )
                if tile.footprint_4326().intersects(part):
                    tiles.append(tile)
    return tiles


def acquisition_days(tile: Tile, year: int, month: int) -> list[int]:
    """12-15 days of the month: two orbits, every few days, a seeded count."""
    days = calendar.monthrange(year, month)[1]
    count = 12 + _seed(tile.name, year, month) % 4
    return sorted({1 + round(i * (days - 1) / (count - 1)) for i in range(count)})


def _seed(*parts) -> int:
    return int(hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()[:8], 16)


def asset_size(path: str) -> int:
    """The size the asset server reports for a path: realistic, seeded, stable."""
    jitter = 0.85 + 0.3 * (_seed(path) % 1000) / 1000
    return int((SCL_BYTES if path.endswith("SCL.tif") else BAND_BYTES) * jitter)


def item(tile: Tile, year: int, month: int, day: int, base_url: str) -> dict:
    platform = ("S2A", "S2B", "S2C")[day % 3]
    scene_id = f"{platform}_{tile.name}_{year}{month:02d}{day:02d}_0_L2A"
    orbit, when = 26 + day % 2 * 57, f"{year}{month:02d}{day:02d}T165400"
    footprint = tile.footprint_4326()
    x0, y0 = tile.x0, tile.y0
    assets = {}
    for band, name in BANDS.items():
        res = 20 if band == "scl" else 10
        raster = {
            "nodata": 0,
            "data_type": "uint8" if band == "scl" else "uint16",
            "spatial_resolution": res,
        }
        if band != "scl":
            raster |= {"scale": 0.0001, "offset": -0.1}
        assets[band] = {
            "href": f"{base_url}/{scene_id}/{name}",
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"] if band == "scl" else ["data", "reflectance"],
            "proj:shape": [TILE_EDGE // res] * 2,
            "proj:transform": [res, 0, x0, 0, -res, y0],
            "raster:bands": [raster],
        }
    zone, band_letter, square = tile.name[:2], tile.name[2], tile.name[3:]
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": scene_id,
        "collection": COLLECTION,
        "geometry": mapping(footprint),
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": f"{year}-{month:02d}-{day:02d}T16:54:{day % 60:02d}.000000Z",
            "created": f"{year}-{month:02d}-{day:02d}T23:00:00Z",
            "updated": f"{year}-{month:02d}-{day:02d}T23:00:00Z",
            "platform": f"sentinel-2{platform[-1].lower()}",
            "constellation": "sentinel-2",
            "instruments": ["msi"],
            "eo:cloud_cover": float(_seed(scene_id) % 100),
            # Earth Search's keys: the relative orbit is only the product URI's R###
            "s2:processing_baseline": "05.11",
            "s2:datatake_id": f"G{platform}_{when}_{orbit * 100 + day:06d}_N05.11",
            "s2:datastrip_id": (
                f"{platform}_OPER_MSI_L2A_DS_2{platform[-1]}PS_{when}_S{when}_N05.11"
            ),
            "s2:product_uri": (
                f"{platform}_MSIL2A_{when}_N0511_R{orbit:03d}_T{tile.name}_{when}.SAFE"
            ),
            "earthsearch:boa_offset_applied": True,
            "mgrs:utm_zone": int(zone),
            "mgrs:latitude_band": band_letter,
            "mgrs:grid_square": square,
            "proj:epsg": tile.epsg,
        },
        "assets": assets,
        "links": [],
    }


@dataclass
class StateWorld:
    root: Path
    aoi_path: Path
    tiles: list[Tile]
    months: list[str]
    items: int = 0
    stac_url: str = ""
    asset_url: str = ""
    item_files: list[Path] = field(default_factory=list)


def write_catalogue(root: Path, asset_url: str, year: int = 2025, months: int = 12) -> StateWorld:
    root.mkdir(parents=True, exist_ok=True)
    aoi = arkansas()
    aoi_path = root / "arkansas.geojson"
    aoi_path.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "features": [
                    {
                        "type": "Feature",
                        "properties": {"name": "Arkansas (fabricated outline)"},
                        "geometry": mapping(aoi),
                    }
                ],
            }
        )
    )
    tiles = tiles_over(aoi)
    features = [
        item(tile, year, month, day, asset_url)
        for month in range(1, months + 1)
        for tile in tiles
        for day in acquisition_days(tile, year, month)
    ]
    collection = {
        "type": "Collection",
        "stac_version": "1.0.0",
        "id": COLLECTION,
        "description": "state-scale fixture",
        "license": "proprietary",
        "links": [],
        "extent": {
            "spatial": {"bbox": [list(aoi.bounds)]},
            "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
        },
    }
    stac = root / "stac"
    stac.mkdir(exist_ok=True)
    (stac / f"{COLLECTION}.json").write_text(json.dumps(collection))
    (stac / f"{COLLECTION}-items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": features})
    )
    return StateWorld(
        root,
        aoi_path,
        tiles,
        [f"{year}-{m:02d}" for m in range(1, months + 1)],
        len(features),
        asset_url=asset_url,
        item_files=[stac / f"{COLLECTION}.json", stac / f"{COLLECTION}-items.json"],
    )


class SizeServer:
    """HEAD answers Content-Length from `asset_size`; counts the requests it served."""

    def __init__(self):
        self.heads = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                server.heads += 1
                self.send_response(200)
                self.send_header("Content-Length", str(asset_size(self.path)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

            def do_GET(self):  # no pixels in this world
                self.send_error(501, "the state-scale fixture serves sizes only")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def start(self) -> SizeServer:
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@contextmanager
def served_state(root: Path, months: int = 12):
    """The fixture written under `root` and served: yields the StateWorld."""
    sizes = SizeServer().start()
    world = write_catalogue(Path(root), sizes.url, months=months)
    stac = StacServer(world.item_files, Path(root) / "rustac.log").wait_ready(timeout=120)
    world.stac_url = stac.url
    try:
        yield world
    finally:
        stac.stop()
        sizes.stop()
