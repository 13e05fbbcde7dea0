"""Fabricate a small Sentinel-2-like world: COGs, STAC items and AOI files.

Two MGRS-like tiles sit either side of the UTM 15N/16N boundary (-90 deg) and
overlap there, as real tiles do; each acquisition (datatake) touching both is one
item per tile. Each scene has 10 m reflectance (uint16 COGs with internal
overviews), a 20 m SCL, nodata edges, bright clouds (SCL 8/9), cirrus (10) and
dark shadows (3). Items carry what Earth Search's real ones carry (facts.md, "the
data as it really arrives"): `s2:datatake_id`, `s2:datastrip_id`, `s2:product_uri`
(with the relative orbit), `proj:epsg` (Collection 1: `proj:code`) and no
`sat:relative_orbit`. Pixels follow each provider's convention: `sentinel-2-l2a`
items flagged `earthsearch:boa_offset_applied: true` have had ESA's +1000 DN
removed, while their `raster:bands` still says `offset: -0.1`; one item flagged
false carries the offset and one flagged false is harmonised all the same
(earth-search #71); Collection 1 and the Planetary Computer serve ESA's pixels,
with the offset from baseline 04.00 on. One acquisition is duplicated (a newer `_1`
copy).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from pyproj import Transformer
from rasterio.enums import Resampling
from rasterio.transform import from_origin
from shapely.geometry import Polygon, box, mapping

SIZE = 512  # 10 m pixels per tile edge
RES = 10.0
ANCHOR = (-90.0, 35.0)  # lon/lat on the 15N/16N zone boundary
COLLECTION = "sentinel-2-l2a"
C1_COLLECTION = "sentinel-2-c1-l2a"
ODD_COLLECTION = "odd-l2a"  # corrupt and unusual items, all in 2022-03
FILES = {
    "blue": "B02.tif",
    "green": "B03.tif",
    "red": "B04.tif",
    "nir": "B08.tif",
    "scl": "SCL.tif",
}
CLOUD_CLASSES = (3, 8, 9, 10)


@dataclass(frozen=True)
class TileSpec:
    name: str
    epsg: int
    west_of_anchor_m: float  # how far the tile reaches west of the anchor


TILES = (TileSpec("15SYU", 32615, 3500.0), TileSpec("16SBU", 32616, 1620.0))
TILE_NAMES = tuple(t.name for t in TILES)


@dataclass(frozen=True)
class SceneSpec:
    date: str
    platform: str
    baseline: str
    flag: bool | None  # earthsearch:boa_offset_applied (None: not in the item)
    raster_offset: float  # raster:bands offset written in the item
    data_offset: bool  # whether the pixels really carry +1000 DN
    orbit: int  # relative orbit
    copy: int = 0  # the _N suffix of the id
    updated: str = "2022-03-01T00:00:00Z"
    tiles: tuple[str, ...] = ("15SYU", "16SBU")
    c1: bool = False  # also published in the C1 collection

    @property
    def day(self) -> str:
        return self.date.replace("-", "")

    @property
    def absolute_orbit(self) -> int:
        """A made-up absolute orbit, the same for every tile of the acquisition."""
        return 34000 + date.fromisoformat(self.date).toordinal() % 1000 * 3 + self.orbit

    @property
    def processed(self) -> str:
        """When this copy was processed (product_uri, datastrip)."""
        return f"{self.updated[:10].replace('-', '')}T{10 + self.copy:02d}0000"

    def datatake_id(self, baseline: str | None = None) -> str:
        return (
            f"G{self.platform}_{self.day}T165419_{self.absolute_orbit:06d}"
            f"_N{baseline or self.baseline}"
        )

    def datastrip_id(self, baseline: str | None = None) -> str:
        return (
            f"{self.platform}_OPER_MSI_L2A_DS_2{self.platform[-1]}PS_{self.processed}"
            f"_S{self.day}T165419_N{baseline or self.baseline}"
        )

    def product_uri(self, tile: str, baseline: str | None = None) -> str:
        code = (baseline or self.baseline).replace(".", "")
        return (
            f"{self.platform}_MSIL2A_{self.day}T165419_N{code}_R{self.orbit:03d}"
            f"_T{tile}_{self.processed}.SAFE"
        )


SCENES = (
    SceneSpec("2022-01-05", "S2A", "03.01", False, -0.1, False, 83),
    SceneSpec("2022-01-15", "S2B", "03.01", False, 0.0, False, 83),
    SceneSpec(
        "2022-01-15",
        "S2B",
        "03.01",
        False,
        0.0,
        False,
        83,
        copy=1,
        updated="2022-06-01T00:00:00Z",
        tiles=("15SYU",),
    ),
    # Earth Search l2a's own convention: flagged true, ESA's offset removed from the
    # pixels, raster:bands still ESA's -0.1
    SceneSpec("2022-01-28", "S2A", "04.00", True, -0.1, False, 40),
    SceneSpec("2022-02-04", "S2B", "04.00", True, -0.1, False, 83, c1=True),
    # flagged false: the pixels carry the offset
    SceneSpec("2022-02-14", "S2A", "04.00", False, -0.1, True, 83, c1=True),
    # earth-search #71: flagged false, and harmonised all the same
    SceneSpec("2022-02-24", "S2B", "04.00", False, -0.1, False, 83),
)
C1_BASELINE = "05.10"  # Collection 1's reprocessing


@dataclass
class Scene:
    id: str
    tile: str
    epsg: int
    spec: SceneSpec
    directory: Path
    collection: str = COLLECTION

    def path(self, band: str) -> Path:
        return self.directory / FILES[band]

    @property
    def month(self) -> str:
        return self.spec.date[:7]

    @property
    def datetime(self) -> str:
        """The acquisition time its STAC item says: an acquisition's tiles differ by a
        few seconds, as real ones do."""
        spec = self.spec
        shift = 3 * TILE_NAMES.index(self.tile) if self.tile in TILE_NAMES else 0
        return f"{spec.date}T16:54:{12 + spec.copy + shift:02d}.{spec.orbit:03d}000Z"


@dataclass
class World:
    root: Path
    base_url: str
    scenes: list[Scene] = field(default_factory=list)
    c1_scenes: list[Scene] = field(default_factory=list)
    tile_bounds: dict = field(default_factory=dict)  # tile -> (crs, bounds)

    @property
    def aoi_gpkg(self) -> Path:
        return self.root / "aoi" / "aoi_5070.gpkg"

    @property
    def aoi_multi_geojson(self) -> Path:
        return self.root / "aoi" / "aoi_multi.geojson"

    @property
    def item_files(self) -> list[Path]:
        collections = [
            c
            for c in (COLLECTION, C1_COLLECTION, ODD_COLLECTION)
            if (self.root / "stac" / f"{c}.json").exists()
        ]
        return [self.root / "stac" / f"{c}.json" for c in collections] + [
            self.root / "stac" / f"{c}-items.json" for c in collections
        ]

    def newest(self, month: str, scenes: list[Scene] | None = None) -> list[Scene]:
        """The newest copy of each acquisition (tile, date) in `month`: what dedup must keep."""
        newest: dict[tuple, Scene] = {}
        for scene in self.scenes if scenes is None else scenes:
            key = (scene.tile, scene.spec.date)
            if scene.month == month and (
                key not in newest or scene.spec.updated > newest[key].spec.updated
            ):
                newest[key] = scene
        return sorted(newest.values(), key=lambda s: s.id)

    def scene(self, scene_id: str) -> Scene:
        return next(s for s in self.scenes + self.c1_scenes if s.id == scene_id)

    def url(self, path: Path) -> str:
        return f"{self.base_url}/{path.relative_to(self.root).as_posix()}"


def tile_origin(tile: TileSpec) -> tuple[float, float]:
    x, y = Transformer.from_crs(4326, tile.epsg, always_xy=True).transform(*ANCHOR)
    snap = 60.0  # real tile origins sit on a 60 m lattice
    return (
        np.floor((x - tile.west_of_anchor_m) / snap) * snap,
        np.floor((y + SIZE * RES / 2) / snap) * snap,
    )


def land(tile: TileSpec) -> tuple[np.ndarray, np.ndarray]:
    """Static surface reflectance (DN, no offset) of 4 bands and its SCL classes, at 10 m.

    Built from geographic coordinates so that overlapping tiles agree.
    """
    x0, y0 = tile_origin(tile)
    cols, rows = np.meshgrid(np.arange(SIZE) + 0.5, np.arange(SIZE) + 0.5)
    lon, lat = Transformer.from_crs(tile.epsg, 4326, always_xy=True).transform(
        x0 + cols * RES, y0 - rows * RES
    )
    u, v = (lon - ANCHOR[0]) * 90.0, (lat - ANCHOR[1]) * 110.0  # ~km
    river = np.abs(v - 0.8 * np.sin(u * 1.3) + 0.6) < 0.18
    field = 0.5 + 0.5 * np.sin(u * 2.1) * np.cos(v * 1.7)
    bands = np.stack(
        [
            420 + 380 * field,  # blue
            560 + 520 * field,  # green
            380 + 800 * field,  # red
            2100 + 1700 * (1 - field),  # nir
        ]
    )
    water = np.array([260, 330, 120, -60])[:, None]  # negative NIR over water
    bands[:, river] = water + 40 * np.sin(u[river] * 9)[None, :]
    scl = np.where(river, 6, np.where(field > 0.5, 4, 5)).astype(np.uint8)
    return bands, scl


def clouds(rng: np.random.Generator, size: int = SIZE) -> np.ndarray:
    """SCL cloud classes at 20 m over a tile of `size` 10 m pixels: cloud blobs (8/9),
    cirrus rims (10), shadows (3), 0 elsewhere."""
    n = size // 2
    yy, xx = np.mgrid[0:n, 0:n]
    out = np.zeros((n, n), dtype=np.uint8)
    for _ in range(rng.integers(2, 5)):
        cy, cx, r = rng.integers(0, n), rng.integers(0, n), rng.integers(8, 30)
        d = np.hypot(yy - cy, xx - cx)
        shadow = np.hypot(yy - cy - r - 6, xx - cx - r // 2) < r * 0.8
        out[shadow & (out == 0)] = 3
        out[(d < r * 1.2) & (d >= r)] = 10
        out[d < r] = 9
        out[d < r * 0.6] = 8
    return out


def scene_pixels(tile: TileSpec, spec: SceneSpec, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stored DNs (uint16, 4 bands at 10 m) and SCL (uint8 at 20 m) of one scene."""
    bands, scl10 = land(tile)
    bands = bands + rng.normal(0, 25, bands.shape)
    cloud20 = clouds(rng)
    cloud10 = cloud20.repeat(2, 0).repeat(2, 1)
    bands[:, np.isin(cloud10, (8, 9))] += 3500
    bands[:, cloud10 == 10] += 900
    bands[:, cloud10 == 3] *= 0.45
    scl10 = np.where(cloud10 > 0, cloud10, scl10)
    dn = bands + (1000 if spec.data_offset else 0)
    dn = np.clip(np.round(dn), 1, 65535).astype(np.uint16)
    # a swath edge: everything past a diagonal is nodata, in every band and in SCL
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    edge = cols + rows * (0.3 + spec.orbit % 7 * 0.1) > SIZE * (1.05 + 0.1 * (spec.orbit % 3))
    edge20 = edge[::2, ::2]
    dn[:, edge] = 0
    scl20 = scl10[::2, ::2].copy()
    scl20[edge20] = 0
    saturated = rng.random(scl20.shape) < 0.002
    scl20[saturated & (scl20 > 0)] = 1
    return dn, scl20


def write_cog(path: Path, data: np.ndarray, epsg: int, transform, resampling: str) -> None:
    """A COG with 64 px blocks (GDAL's COG driver insists on >= 128, too coarse for
    512 px tiles): overviews built on a scratch GTiff, then copied with
    COPY_SRC_OVERVIEWS, GDAL's classic COG recipe."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_suffix(".scratch.tif")
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": transform,
        "nodata": 0,
    }
    with rasterio.open(scratch, "w", **profile) as dst:
        dst.write(data, 1)
        dst.build_overviews([2, 4], Resampling[resampling])
    rasterio.shutil.copy(
        scratch,
        path,
        driver="GTiff",
        tiled=True,
        blockxsize=64,
        blockysize=64,
        compress="DEFLATE",
        copy_src_overviews=True,
    )
    scratch.unlink()


def scene_id(spec: SceneSpec, tile: str, c1: bool = False) -> str:
    day = spec.date.replace("-", "")
    if c1:
        return f"{spec.platform}_T{tile}_{day}T165419_L2A"
    return f"{spec.platform}_{tile}_{day}_{spec.copy}_L2A"


def build_world(root: Path, base_url: str) -> World:
    world = World(root=root, base_url=base_url)
    items = {COLLECTION: [], C1_COLLECTION: []}
    for t_index, tile in enumerate(TILES):
        x0, y0 = tile_origin(tile)
        bounds = (x0, y0 - SIZE * RES, x0 + SIZE * RES, y0)
        world.tile_bounds[tile.name] = (f"EPSG:{tile.epsg}", bounds)
        for s_index, spec in enumerate(SCENES):
            if tile.name not in spec.tiles:
                continue
            rng = np.random.default_rng(1000 * t_index + s_index)
            dn, scl = scene_pixels(tile, spec, rng)
            scene = Scene(
                scene_id(spec, tile.name),
                tile.name,
                tile.epsg,
                spec,
                root / "cogs" / scene_id(spec, tile.name),
            )
            write_scene_files(scene, tile, dn, scl)
            world.scenes.append(scene)
            items[COLLECTION].append(stac_item(world, scene, tile, bounds, scl))
            if spec.c1:
                c1 = c1_twin(scene, tile, root)
                world.c1_scenes.append(c1)
                items[C1_COLLECTION].append(stac_item(world, c1, tile, bounds, scl))
    write_stac(world, items)
    write_aois(world)
    return world


def write_scene_files(scene: Scene, tile: TileSpec, dn: np.ndarray, scl: np.ndarray) -> None:
    x0, y0 = tile_origin(tile)
    for i, band in enumerate(("blue", "green", "red", "nir")):
        write_cog(scene.path(band), dn[i], tile.epsg, from_origin(x0, y0, RES, RES), "average")
    write_cog(scene.path("scl"), scl, tile.epsg, from_origin(x0, y0, 2 * RES, 2 * RES), "nearest")


def with_offset(scene: Scene, directory: Path) -> Path:
    """The scene's files as ESA made them, +1000 DN in every valid reflectance pixel:
    its own files where they already carry the offset, else copies in `directory`."""
    if scene.spec.data_offset:
        return scene.directory
    for band, name in FILES.items():
        target = directory / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if band == "scl":
            shutil.copyfile(scene.path(band), target)
            continue
        with rasterio.open(scene.path(band)) as src:
            dn, transform = src.read(1), src.transform
        offset = np.where(dn > 0, dn.astype(np.int64) + 1000, 0).astype(np.uint16)
        write_cog(target, offset, scene.epsg, transform, "average")
    return directory


def c1_twin(scene: Scene, tile: TileSpec, root: Path) -> Scene:
    """The scene as Collection 1 publishes it: reprocessed, its pixels with the offset."""
    spec = replace(scene.spec, baseline=C1_BASELINE, flag=None, data_offset=True)
    c1_id = scene_id(scene.spec, tile.name, c1=True)
    directory = with_offset(scene, root / "cogs" / c1_id)
    return Scene(c1_id, tile.name, tile.epsg, spec, directory, C1_COLLECTION)


def footprint_4326(epsg: int, bounds) -> Polygon:
    ring = np.array(box(*bounds).exterior.coords)
    lon, lat = Transformer.from_crs(epsg, 4326, always_xy=True).transform(ring[:, 0], ring[:, 1])
    return Polygon(zip(np.round(lon, 7), np.round(lat, 7)))


def stac_item(world: World, scene: Scene, tile: TileSpec, bounds, scl: np.ndarray) -> dict:
    spec = scene.spec
    footprint = footprint_4326(tile.epsg, bounds)
    valid = scl > 0
    cloud_cover = (
        round(float(np.isin(scl[valid], CLOUD_CLASSES).mean() * 100), 4) if valid.any() else 0.0
    )
    x0, _, x1, y0 = bounds
    reflectance_band = {
        "nodata": 0,
        "data_type": "uint16",
        "bits_per_sample": 15,
        "spatial_resolution": 10,
        "scale": 0.0001,
        "offset": spec.raster_offset,
    }
    assets = {}
    for band, name in FILES.items():
        is_scl = band == "scl"
        res = 20 if is_scl else 10
        assets[band] = {
            "href": world.url(scene.path(band)),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "title": name.removesuffix(".tif"),
            "roles": ["data"] if is_scl else ["data", "reflectance"],
            "proj:shape": [round((bounds[3] - bounds[1]) / res), round((x1 - x0) / res)],
            "proj:transform": [res, 0, x0, 0, -res, y0],
            "raster:bands": [{"nodata": 0, "data_type": "uint8", "spatial_resolution": 20}]
            if is_scl
            else [reflectance_band],
        }
    props = {
        "datetime": scene.datetime,
        "created": "2022-02-28T00:00:00Z",
        "updated": spec.updated,
        "platform": {"S2A": "sentinel-2a", "S2B": "sentinel-2b"}[spec.platform],
        "constellation": "sentinel-2",
        "instruments": ["msi"],
        "eo:cloud_cover": cloud_cover,
        "s2:processing_baseline": spec.baseline,
        # what every Earth Search item carries; the relative orbit is only in the product
        # URI's R### (Earth Search has no sat:relative_orbit)
        "s2:datatake_id": spec.datatake_id(),
        "s2:datastrip_id": spec.datastrip_id(),
        "s2:product_uri": spec.product_uri(tile.name),
        "mgrs:utm_zone": int(tile.name[:2]),
        "mgrs:latitude_band": tile.name[2],
        "mgrs:grid_square": tile.name[3:],
        "grid:code": f"MGRS-{tile.name}",
    }
    if spec.flag is not None:
        props["earthsearch:boa_offset_applied"] = spec.flag
    if scene.collection == C1_COLLECTION:
        props["proj:code"] = f"EPSG:{tile.epsg}"  # newer items: projection extension v2
    else:
        props["proj:epsg"] = tile.epsg
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.1.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
        "id": scene.id,
        "collection": scene.collection,
        "geometry": mapping(footprint),
        "bbox": list(footprint.bounds),
        "properties": props,
        "assets": assets,
        "links": [],
    }


def write_stac(world: World, items: dict) -> None:
    stac = world.root / "stac"
    stac.mkdir(parents=True, exist_ok=True)
    for collection, features in items.items():
        doc = {
            "type": "Collection",
            "stac_version": "1.0.0",
            "id": collection,
            "description": f"test world {collection}",
            "license": "proprietary",
            "links": [],
            "extent": {
                "spatial": {"bbox": [[-91, 34, -89, 36]]},
                "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
            },
        }
        (stac / f"{collection}.json").write_text(json.dumps(doc))
        (stac / f"{collection}-items.json").write_text(
            json.dumps({"type": "FeatureCollection", "features": features})
        )


def aoi_polygon_4326() -> Polygon:
    """An irregular hexagon around the anchor, covering parts of both tiles."""
    lon, lat = ANCHOR
    return Polygon(
        [
            (lon - 0.013, lat - 0.004),
            (lon - 0.004, lat - 0.011),
            (lon + 0.010, lat - 0.008),
            (lon + 0.012, lat + 0.006),
            (lon + 0.003, lat + 0.012),
            (lon - 0.011, lat + 0.009),
        ]
    )


def write_aois(world: World) -> None:
    import geopandas

    world.aoi_gpkg.parent.mkdir(parents=True, exist_ok=True)
    hexagon = geopandas.GeoDataFrame({"name": ["hexagon"]}, geometry=[aoi_polygon_4326()], crs=4326)
    hexagon.to_crs(5070).to_file(world.aoi_gpkg, driver="GPKG")
    lon, lat = ANCHOR
    west = box(lon - 0.030, lat - 0.006, lon - 0.022, lat + 0.004)
    east = box(lon + 0.020, lat - 0.004, lon + 0.030, lat + 0.008)
    multi = geopandas.GeoDataFrame({"name": ["two parts"]}, geometry=[west.union(east)], crs=4326)
    multi.to_file(world.aoi_multi_geojson, driver="GeoJSON")


def add_acquisition(world: World, like: str, date: str) -> str:
    """Publish a new acquisition (a copy of scene `like`'s files on `date`); returns its id.

    Rewrites the collection's item file: restart the STAC server to serve it.
    """
    original = world.scene(like)
    spec = replace(original.spec, date=date, copy=0, tiles=(original.tile,))
    new_id = scene_id(spec, original.tile)
    scene = Scene(new_id, original.tile, original.epsg, spec, world.root / "cogs" / new_id)
    shutil.copytree(original.directory, scene.directory)
    items_path = world.root / "stac" / f"{COLLECTION}-items.json"
    items = json.loads(items_path.read_text())
    template = next(f for f in items["features"] if f["id"] == like)
    # the same day in its id, hrefs, datetime, datatake, datastrip and product URI
    item = json.loads(
        json.dumps(template).replace(like, new_id).replace(original.spec.day, spec.day)
    )
    item["properties"]["datetime"] = template["properties"]["datetime"].replace(
        original.spec.date, date
    )
    items["features"].append(item)
    items_path.write_text(json.dumps(items))
    world.scenes.append(scene)
    return new_id


def add_odd_collection(world: World) -> dict[str, str]:
    """Items that go wrong in every way a user has met, plus one good one; 2022-03, tile 15SYU.

    Returns {case: item id}. Call before starting the STAC server.
    """

    tile = TILES[0]
    x0, y0 = tile_origin(tile)
    bounds = (x0, y0 - SIZE * RES, x0 + SIZE * RES, y0)
    cases = [
        "good",
        "not_a_tiff",
        "truncated",
        "missing_asset",
        "far_away",
        "all_nodata",
        "all_cloud",
    ]
    items, ids = [], {}
    for day, case in enumerate(cases, start=2):
        # Earth Search l2a's convention: flagged true, the offset removed from the pixels
        spec = SceneSpec(
            f"2022-03-{day:02d}", "S2A", "04.00", True, -0.1, False, 40, tiles=(tile.name,)
        )
        scene = Scene(
            scene_id(spec, tile.name),
            tile.name,
            tile.epsg,
            spec,
            world.root / "cogs" / f"odd-{case}",
            ODD_COLLECTION,
        )
        dn, scl = scene_pixels(tile, spec, np.random.default_rng(day))
        if case == "all_nodata":
            dn[:], scl[:] = 0, 0
        if case == "all_cloud":
            dn[:], scl[:] = 5000, 9
        for i, band in enumerate(("blue", "green", "red", "nir")):
            write_cog(scene.path(band), dn[i], tile.epsg, from_origin(x0, y0, RES, RES), "average")
        write_cog(
            scene.path("scl"), scl, tile.epsg, from_origin(x0, y0, 2 * RES, 2 * RES), "nearest"
        )
        if case == "not_a_tiff":
            scene.path("red").write_text("<html>503 Service Unavailable</html>" * 50)
        if case == "truncated":
            data = scene.path("green").read_bytes()
            scene.path("green").write_bytes(data[: len(data) // 3])
        item = stac_item(world, scene, tile, bounds, scl)
        if case == "missing_asset":
            del item["assets"]["scl"]
        if case == "far_away":
            far = footprint_4326(
                tile.epsg, (bounds[0] + 200_000, bounds[1], bounds[2] + 200_000, bounds[3])
            )
            item["geometry"], item["bbox"] = mapping(far), list(far.bounds)
        items.append(item)
        world.scenes.append(scene)
        ids[case] = scene.id
    stac = world.root / "stac"
    collection = json.loads((stac / f"{COLLECTION}.json").read_text()) | {"id": ODD_COLLECTION}
    (stac / f"{ODD_COLLECTION}.json").write_text(json.dumps(collection))
    (stac / f"{ODD_COLLECTION}-items.json").write_text(
        json.dumps({"type": "FeatureCollection", "features": items})
    )
    return ids


PC_COLLECTION = "sentinel-2-l2a"  # Microsoft's id; served by a STAC server of its own
PC_STORAGE = "http://sentinel2l2a01.blob.core.windows.net"  # reached through the test's proxy
PC_ASSETS = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}


def build_pc_world(world: World, month: str = "2022-02") -> tuple[list[Path], list[Scene]]:
    """Planetary Computer's shape of the world's scenes of `month`: ids
    `S2B_MSIL2A_<sensed>_R<orbit>_T<tile>_<processed>`, assets B02... SCL in blob storage,
    `s2:mgrs_tile`, `sat:relative_orbit`, no harmonisation and no offset metadata: the
    pixels are ESA's, with the +1000 DN from baseline 04.00 on. One scene is published
    twice (an older processing of it, a duplicate to drop).

    The files are under <root>/sentinel2-l2/, served as the storage account's container.
    Returns (STAC files for a STAC server of its own, the scenes to keep).
    """
    items, kept = [], []
    for scene in world.newest(month):
        spec = scene.spec
        tile = next(t for t in TILES if t.name == scene.tile)
        copies = [("20220305T101010", scene)]
        if not items:
            copies.append(("20220215T090000", None))  # an older processing: dropped
        for processed, keep in copies:
            directory = (
                world.root
                / "sentinel2-l2"
                / tile.name[:2]
                / tile.name[2]
                / tile.name[3:]
                / spec.date.replace("-", "/")
                / f"{spec.day}_{processed}.SAFE"
            )
            pc = pc_scene(scene, tile, processed, directory)
            if keep is not None:
                kept.append(pc)
            items.append(pc_item(world, pc, tile))
    stac = world.root / "stac-pc"
    stac.mkdir(parents=True, exist_ok=True)
    (stac / "collection.json").write_text(
        json.dumps(
            {
                "type": "Collection",
                "stac_version": "1.0.0",
                "id": PC_COLLECTION,
                "description": "test world, Planetary Computer's shape",
                "license": "proprietary",
                "links": [],
                "extent": {
                    "spatial": {"bbox": [[-91, 34, -89, 36]]},
                    "temporal": {"interval": [["2015-06-27T00:00:00Z", None]]},
                },
            }
        )
    )
    (stac / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    return [stac / "collection.json", stac / "items.json"], kept


def pc_scene(scene: Scene, tile: TileSpec, processed: str, directory: Path) -> Scene:
    """The scene as the Planetary Computer serves it: ESA's pixels, so with the offset
    from baseline 04.00 on, whatever Earth Search did to its copy."""
    spec = replace(scene.spec, flag=None, data_offset=scene.spec.baseline >= "04.00")
    pc_id = f"{spec.platform}_MSIL2A_{spec.day}T163551_R{spec.orbit:03d}_T{tile.name}_{processed}"
    pc = Scene(pc_id, tile.name, tile.epsg, spec, directory, PC_COLLECTION)
    if spec.data_offset:
        with_offset(scene, directory)
    if not (directory / FILES["red"]).exists():
        for band in FILES:
            pc.path(band).parent.mkdir(parents=True, exist_ok=True)
            pc.path(band).symlink_to(scene.path(band))
    return pc


def pc_item(
    world: World, scene: Scene, tile: TileSpec, bounds=None, storage: str = PC_STORAGE
) -> dict:
    """The Planetary Computer's item of a scene whose files lie under the world's root,
    at `storage` (its blob storage; reached through the test's proxy)."""
    if bounds is None:
        x0, y0 = tile_origin(tile)
        bounds = (x0, y0 - SIZE * RES, x0 + SIZE * RES, y0)
    x0, _, x1, y0 = bounds
    footprint = footprint_4326(tile.epsg, bounds)
    with rasterio.open(scene.path("scl")) as src:
        scl = src.read(1)
    valid = scl > 0
    assets = {}
    for band, key in PC_ASSETS.items():
        res = 20 if band == "scl" else 10
        assets[key] = {
            "href": storage + "/" + scene.path(band).relative_to(world.root).as_posix(),
            "type": "image/tiff; application=geotiff; profile=cloud-optimized",
            "roles": ["data"],
            "gsd": res,
            "proj:shape": [round((bounds[3] - bounds[1]) / res), round((x1 - x0) / res)],
            "proj:transform": [res, 0, x0, 0, -res, y0],
        }
    return {
        "type": "Feature",
        "stac_version": "1.0.0",
        "stac_extensions": [
            "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
            "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
        ],
        "id": scene.id,
        "collection": PC_COLLECTION,
        "geometry": mapping(footprint),
        "bbox": list(footprint.bounds),
        "properties": {
            "datetime": f"{scene.spec.date}T16:35:51.024000Z",
            "platform": {"S2A": "Sentinel-2A", "S2B": "Sentinel-2B"}[scene.spec.platform],
            "constellation": "Sentinel 2",
            "instruments": ["msi"],
            "eo:cloud_cover": round(float(np.isin(scl[valid], CLOUD_CLASSES).mean() * 100), 4),
            "sat:orbit_state": "descending",
            "sat:relative_orbit": scene.spec.orbit,
            "s2:mgrs_tile": tile.name,
            "s2:datatake_id": scene.spec.datatake_id(),
            "s2:datastrip_id": scene.spec.datastrip_id(),
            "s2:processing_baseline": scene.spec.baseline,
            "s2:product_type": "S2MSI2A",
            "proj:epsg": tile.epsg,
        },
        "assets": assets,
        "links": [],
    }
