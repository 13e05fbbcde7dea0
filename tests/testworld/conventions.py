"""A world of every offset convention a provider really serves, on dark and on arid land.

Two tiles of one UTM zone side by side: one of dark land (fields, forest, a river:
low visible reflectance), one of arid land (a bright desert, blue 0.10-0.20, with a
few irrigated fields and a river on about 3 % of it: fewer than a share of dark pixels
over all clear ones would notice). The AOI crosses both, so every scene's window is one kind of
land. Each case publishes two acquisitions per tile, in a month of its own:

- Earth Search `sentinel-2-l2a` (facts.md, "Earth Search sentinel-2-l2a offsets"):
  2023-04 flagged `earthsearch:boa_offset_applied: true`, the offset removed from
  the pixels; 2023-05 flagged false, the pixels carrying it; 2023-06 flagged false
  and harmonised all the same (earth-search #66, #71). Every item says `raster:bands`
  `offset: -0.1`, as real ones do.
- Earth Search Collection 1, 2023-05: reprocessed at 05.10, no flag, the offset in
  the pixels.
- The Planetary Computer's shape, 2023-05: its own ids and keys, no offset metadata,
  ESA's pixels (the offset from 04.00 on).

The truth is each scene's `spec.data_offset`: test references harmonise from it, not
from what the code under test decides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import Polygon

from testworld.build import (
    C1_COLLECTION,
    COLLECTION,
    FILES,
    PC_ASSETS,
    RES,
    Scene,
    SceneSpec,
    TileSpec,
    World,
    clouds,
    pc_item,
    scene_id,
    stac_item,
    write_cog,
    write_stac,
)

SIZE = 256  # 10 m pixels per tile edge
ANCHOR = (-90.6, 35.2)  # lon/lat, in UTM zone 15N
PC_LIKE_COLLECTION = "pc-sentinel-2-l2a"  # the Planetary Computer's shape, in the same API
LANDS = {"15SWV": "dark", "15SXV": "arid"}
TILES = (TileSpec("15SWV", 32615, 0.0), TileSpec("15SXV", 32615, 0.0))
# (collection, month, flag, the pixels carry the offset)
CASES = {
    "l2a flagged true": (COLLECTION, "2023-04", True, False),
    "l2a flagged false, with the offset": (COLLECTION, "2023-05", False, True),
    "l2a flagged false, harmonised": (COLLECTION, "2023-06", False, False),
    "Collection 1": (C1_COLLECTION, "2023-05", None, True),
    "Planetary Computer": (PC_LIKE_COLLECTION, "2023-05", None, True),
}
# Real tiles are sampled on 512 x 512 pixels; these, at 256 x 256 with a window of about
# 200 x 200, keep radiometry.MIN_SAMPLE_PIXELS clear dark pixels on arid land (3 % of
# it) only where clouds, cirrus and shadows cover at most this share of the scene.
MAX_CLOUD_COVER = 0.4
DAYS = ((3, "S2A", 40), (18, "S2B", 83))  # two acquisitions a month: day, platform, orbit
BASELINES = {COLLECTION: "05.09", C1_COLLECTION: "05.10", PC_LIKE_COLLECTION: "05.09"}


@dataclass
class ConventionsWorld(World):
    """The world, with the scenes of each case (`cases[name]`)."""

    cases: dict = None
    aoi_geojson: Path = None

    @property
    def aoi_gpkg(self) -> Path:  # what test_products' reference reads
        return self.aoi_geojson

    @property
    def item_files(self) -> list[Path]:
        stac = self.root / "stac"
        names = (COLLECTION, C1_COLLECTION, PC_LIKE_COLLECTION)
        return [stac / f"{c}.json" for c in names] + [stac / f"{c}-items.json" for c in names]


def tile_origin(index: int) -> tuple[float, float]:
    x, y = Transformer.from_crs(4326, 32615, always_xy=True).transform(*ANCHOR)
    snap = 60.0  # real tile origins sit on a 60 m lattice
    return np.floor(x / snap) * snap + index * SIZE * RES, np.floor(y / snap) * snap


def ground(land: str, x0: float, y0: float) -> tuple[np.ndarray, np.ndarray]:
    """Surface reflectance DNs without any offset (4, SIZE, SIZE) and SCL classes at 10 m."""
    rows, cols = np.mgrid[0:SIZE, 0:SIZE] + 0.5
    u, v = (x0 + cols * RES) / 1000.0, (y0 - rows * RES) / 1000.0  # km
    wave = 0.5 + 0.5 * np.sin(u * 2.3) * np.cos(v * 1.9)
    river = np.abs(v - v.mean() - 0.3 * np.sin(u * 2.0)) < 0.025
    if land == "dark":
        bands = np.stack(
            [300 + 300 * wave, 500 + 400 * wave, 300 + 600 * wave, 2200 + 1500 * (1 - wave)]
        )
        scl = np.where(wave > 0.5, 4, 5)
        water = (380, 450, 240, 80)
    else:
        bands = np.stack(
            [1100 + 800 * wave, 1500 + 1000 * wave, 1900 + 1200 * wave, 2500 + 1000 * wave]
        )
        scl = np.full(wave.shape, 5)
        pivots = np.zeros(wave.shape, dtype=bool)
        for cu, cv in ((0.45, 0.40), (1.7, 1.9), (2.1, 0.8)):
            pivots |= np.hypot(cols * RES / 1000 - cu, rows * RES / 1000 - cv) < 0.10
        bands[:, pivots] = np.array([400, 650, 420, 3600])[:, None]
        scl[pivots] = 4
        water = (520, 610, 450, 220)  # a silty river
    bands[:, river] = np.array(water)[:, None]
    scl[river] = 6
    return bands, scl.astype(np.uint8)


def scene_pixels(land: str, origin, data_offset: bool, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stored DNs (uint16) and SCL (uint8 at 20 m) of one scene: the ground, noise,
    clouds, shadows and cirrus, a nodata corner, and the offset when `data_offset`."""
    bands, scl10 = ground(land, *origin)
    bands = bands + rng.normal(0, 20, bands.shape)
    cloud20 = clouds(rng, SIZE)
    while (cloud20 > 0).mean() > MAX_CLOUD_COVER:
        cloud20 = clouds(rng, SIZE)
    cloud10 = cloud20.repeat(2, 0).repeat(2, 1)
    bands[:, np.isin(cloud10, (8, 9))] += 4000
    bands[:, cloud10 == 10] += 900
    bands[:, cloud10 == 3] *= 0.45
    scl10 = np.where(cloud10 > 0, cloud10, scl10)
    dn = np.clip(np.round(bands), 1, 64000) + (1000 if data_offset else 0)
    dn = dn.astype(np.uint16)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    edge = cols + rows > 1.7 * SIZE  # a swath edge: nodata in every band and in SCL
    dn[:, edge] = 0
    scl20 = scl10[::2, ::2].copy()
    scl20[edge[::2, ::2]] = 0
    return dn, scl20


def build_conventions_world(root: Path, base_url: str) -> ConventionsWorld:
    world = ConventionsWorld(root=root, base_url=base_url, cases={})
    items = {COLLECTION: [], C1_COLLECTION: [], PC_LIKE_COLLECTION: []}
    for t_index, tile in enumerate(TILES):
        x0, y0 = tile_origin(t_index)
        bounds = (x0, y0 - SIZE * RES, x0 + SIZE * RES, y0)
        world.tile_bounds[tile.name] = ("EPSG:32615", bounds)
        for c_index, (case, (collection, month, flag, data_offset)) in enumerate(CASES.items()):
            for d_index, (day, platform, orbit) in enumerate(DAYS):
                spec = SceneSpec(
                    f"{month}-{day:02d}",
                    platform,
                    BASELINES[collection],
                    flag,
                    -0.1,
                    data_offset,
                    orbit,
                    updated=f"{month}-28T00:00:00Z",
                    tiles=(tile.name,),
                )
                scene = make_scene(world, case, collection, spec, tile, bounds)
                rng = np.random.default_rng([t_index, c_index, d_index])
                dn, scl = scene_pixels(LANDS[tile.name], (x0, y0), data_offset, rng)
                for i, band in enumerate(("blue", "green", "red", "nir")):
                    write_cog(
                        scene.path(band), dn[i], 32615, from_origin(x0, y0, RES, RES), "average"
                    )
                write_cog(
                    scene.path("scl"), scl, 32615, from_origin(x0, y0, 2 * RES, 2 * RES), "nearest"
                )
                items[collection].append(item_of(world, scene, tile, bounds, scl))
    items[COLLECTION] += unreadable_items(items[COLLECTION])
    write_stac(world, items)
    write_aoi(world)
    return world


# Items Element 84 published before their COGs: bands in the requester-pays JP2 archive
# (facts.md, "Items published before their COGs"). A newer copy of a readable scene, and
# an acquisition with no readable copy at all.
UNREADABLE_TWIN = ("S2A_15SXV_20230503_0_L2A", "S2A_15SXV_20230503_1_L2A")
UNREADABLE_ONLY = ("S2B_15SWV_20230618_0_L2A", "S2B_15SWV_20230621_0_L2A")


def unreadable_items(l2a_items: list[dict]) -> list[dict]:
    added = []
    for like, new_id in (UNREADABLE_TWIN, UNREADABLE_ONLY):
        template = next(i for i in l2a_items if i["id"] == like)
        old_day, new_day = like.split("_")[2], new_id.split("_")[2]
        text = json.dumps(template).replace(like, new_id).replace(old_day, new_day)
        dashed = (f"{d[:4]}-{d[4:6]}-{d[6:]}" for d in (old_day, new_day))
        item = json.loads(text.replace(*dashed))
        props = item["properties"]
        props["s2:processing_baseline"] = "05.10"  # higher than the readable copy's
        props["updated"] = "2023-07-01T00:00:00Z"
        tile = f"{props['mgrs:utm_zone']}/{props['mgrs:latitude_band']}/{props['mgrs:grid_square']}"
        day = f"{new_day[:4]}/{int(new_day[4:6])}/{int(new_day[6:])}"
        for band, asset in item["assets"].items():
            name = {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"}[band]
            folder = "R20m" if band == "scl" else "R10m"
            asset["href"] = (
                f"s3://sentinel-s2-l2a/tiles/{tile}/{day}/{new_id[-5]}/{folder}/{name}.jp2"
            )
            asset["type"] = "image/jp2"
        added.append(item)
    return added


def make_scene(world, case, collection, spec, tile, bounds) -> Scene:
    if collection == PC_LIKE_COLLECTION:
        ident = f"{spec.platform}_MSIL2A_{spec.day}T163551_R{spec.orbit:03d}_T{tile.name}_{spec.day}T200000"
    else:
        ident = scene_id(spec, tile.name, c1=collection == C1_COLLECTION)
    scene = Scene(ident, tile.name, tile.epsg, spec, world.root / "cogs" / ident, collection)
    world.scenes.append(scene)
    world.cases.setdefault(case, []).append(scene)
    return scene


def item_of(world, scene, tile, bounds, scl) -> dict:
    if scene.collection == PC_LIKE_COLLECTION:
        item = pc_item(world, scene, tile, bounds, storage=world.base_url)
        item["collection"] = PC_LIKE_COLLECTION
        return item
    return stac_item(world, scene, tile, bounds, scl)


def write_aoi(world: ConventionsWorld) -> None:
    """A polygon over the middle of both tiles, in EPSG:4326."""
    x0, y0 = tile_origin(0)
    margin, height = 0.12 * SIZE * RES, SIZE * RES
    ring = [
        (x0 + margin, y0 - margin),
        (x0 + 2 * SIZE * RES - margin, y0 - 1.5 * margin),
        (x0 + 2 * SIZE * RES - 1.5 * margin, y0 - height + 2 * margin),
        (x0 + 1.2 * margin, y0 - height + margin),
    ]
    to_4326 = Transformer.from_crs(32615, 4326, always_xy=True)
    polygon = Polygon([to_4326.transform(x, y) for x, y in ring])
    world.aoi_geojson = world.root / "aoi" / "aoi.geojson"
    world.aoi_geojson.parent.mkdir(parents=True, exist_ok=True)
    feature = {"type": "Feature", "properties": {}, "geometry": polygon.__geo_interface__}
    world.aoi_geojson.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))


__all__ = ["CASES", "FILES", "LANDS", "PC_ASSETS", "build_conventions_world"]
