"""A world true to acquisitions: one datatake seen through overlapping MGRS tiles.

Three tiles (facts.md, "One acquisition, several items"): two neighbours of UTM zone
15 that overlap by OVERLAP pixels, as MGRS neighbours overlap by 9.8 km, and one of zone
16 across the zone boundary, over the southern half of both. An acquisition is one
item per tile it touches, with one `s2:datatake_id`, datetimes a few seconds apart.

Everything an acquisition does follows the ground, in every tile that sees it: the land,
its clouds, cirrus and shadows, its swath edge are functions of the position in one
frame (EPSG:32615 metres), whatever the tile's CRS. Per-tile processing leaves its
traces, as L2A's does: each tile's reflectance sits a few DN from its neighbour's
(TILE_BIAS_DN, and noise of its own), and its SCL draws cloud edges a pixel apart
(CLOUD_EDGE_SHIFT_M at 20 m).

Three months of six acquisitions each, one for each composite method; two
acquisitions per month miss a tile (another orbit's swath). Pixels carry no offset,
and the items say so (Earth Search l2a, flagged true).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pyproj import Transformer
from rasterio.transform import from_origin
from shapely.geometry import Polygon

from testworld.build import (
    COLLECTION,
    RES,
    Scene,
    SceneSpec,
    TileSpec,
    World,
    scene_id,
    stac_item,
    write_cog,
    write_stac,
)

SIZE = 256  # 10 m pixels per tile edge
OVERLAP = 64  # pixels the two zone-15 neighbours share
ANCHOR = (-90.03, 34.6)  # lon/lat near the 15N/16N boundary
FRAME = 32615  # the ground's frame: zone 15's metres
TILES = (
    TileSpec("15SYT", 32615, 0.0),
    TileSpec("15SZT", 32615, 0.0),
    TileSpec("16SBT", 32616, 0.0),
)
TILE_BIAS_DN = (0, 4, -3)  # per-tile processing: reflectance a few DN apart
CLOUD_EDGE_SHIFT_M = (0.0, 20.0, -20.0)  # and cloud edges a 20 m SCL pixel apart
# (day, platform, relative orbit, tiles it touches) of each month's acquisitions
ACQUISITIONS = (
    (3, "S2A", 83, (0, 1, 2)),
    (8, "S2B", 83, (0, 1, 2)),
    (13, "S2A", 83, (0, 1, 2)),
    (16, "S2B", 40, (0, 1)),
    (23, "S2A", 40, (1, 2)),
    (28, "S2B", 83, (0, 1, 2)),
)
MONTHS = {"2023-07": "percentile", "2023-08": "pick", "2023-09": "medoid"}


@dataclass
class TileScene(Scene):
    shift_s: int = 0  # the acquisition reached this tile a few seconds after the first

    @property
    def datetime(self) -> str:
        return f"{self.spec.date}T16:54:{12 + self.shift_s:02d}.{self.spec.orbit:03d}000Z"


@dataclass
class AcquisitionWorld(World):
    aoi_path: Path = None

    @property
    def aoi_gpkg(self) -> Path:  # what world_config and test_products' reference read
        return self.aoi_path

    def scenes_of(self, month: str) -> list[Scene]:
        return sorted((s for s in self.scenes if s.month == month), key=lambda s: s.id)


def frame_origin() -> tuple[float, float]:
    """The first tile's top left corner, on the 60 m lattice of real tile origins."""
    x, y = Transformer.from_crs(4326, FRAME, always_xy=True).transform(*ANCHOR)
    return np.floor(x / 60) * 60, np.floor(y / 60) * 60


def tile_origin(index: int) -> tuple[float, float]:
    x0, y0 = frame_origin()
    if index < 2:
        return x0 + index * (SIZE - OVERLAP) * RES, y0
    # zone 16: its corner over the first tile's middle, snapped in its own CRS
    corner = (x0 + 0.45 * SIZE * RES, y0 - 0.55 * SIZE * RES)
    x, y = Transformer.from_crs(FRAME, TILES[2].epsg, always_xy=True).transform(*corner)
    return np.floor(x / 60) * 60, np.floor(y / 60) * 60


def in_frame(index: int, step: float) -> tuple[np.ndarray, np.ndarray]:
    """Frame coordinates of the centres of tile `index`'s pixels of `step` metres."""
    x0, y0 = tile_origin(index)
    n = int(SIZE * RES / step)
    cols, rows = np.meshgrid(np.arange(n) + 0.5, np.arange(n) + 0.5)
    x, y = x0 + cols * step, y0 - rows * step
    if TILES[index].epsg == FRAME:
        return x, y
    return Transformer.from_crs(TILES[index].epsg, FRAME, always_xy=True).transform(x, y)


def ground(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Surface reflectance DN (4, ...) and SCL classes of the land at frame coordinates."""
    x0, y0 = frame_origin()
    u, v = (x - x0) / 1000.0, (y0 - y) / 1000.0  # km
    wave = 0.5 + 0.5 * np.sin(u * 2.3) * np.cos(v * 1.9)
    river = np.abs(v - 1.6 - 0.3 * np.sin(u * 2.0)) < 0.03
    bands = np.stack(
        [300 + 300 * wave, 500 + 400 * wave, 300 + 600 * wave, 2200 + 1500 * (1 - wave)]
    )
    bands[:, river] = np.array([380, 450, 240, 80])[:, None]
    scl = np.where(river, 6, np.where(wave > 0.5, 4, 5)).astype(np.uint8)
    return bands, scl


@dataclass(frozen=True)
class Weather:
    """One acquisition's clouds and swath edge, in the frame: the same in every tile."""

    blobs: tuple  # (x, y, radius) of each cloud, metres
    swath: tuple  # (cos, sin, limit): nodata where cos * east + sin * south > limit

    @classmethod
    def draw(cls, rng) -> Weather:
        x0, y0 = frame_origin()
        width, height = (2 * SIZE - OVERLAP) * RES, 1.6 * SIZE * RES
        blobs = tuple(
            (x0 + rng.uniform(0, width), y0 - rng.uniform(0, height), rng.uniform(180, 420))
            for _ in range(rng.integers(3, 6))
        )
        angle = rng.uniform(0.2, 1.2)
        limit = rng.uniform(0.75, 1.3) * width * np.cos(angle)
        return cls(blobs, (np.cos(angle), np.sin(angle), limit))

    def clouds(self, x, y, edge_shift: float) -> np.ndarray:
        """SCL cloud classes (8, 9 cloud; 10 cirrus rim; 3 shadow; 0 clear) at the points,
        cloud edges moved out by `edge_shift` metres, as one tile's processing draws them."""
        out = np.zeros(np.shape(x), dtype=np.uint8)
        for cx, cy, radius in self.blobs:
            r = radius + edge_shift
            d = np.hypot(x - cx, y - cy)
            shadow = np.hypot(x - cx - 0.5 * r, y - cy + r + 120) < 0.8 * r
            out[shadow & (out == 0)] = 3
            out[(d < 1.2 * r) & (d >= r)] = 10
            out[d < r] = 9
            out[d < 0.6 * r] = 8
        return out

    def off_swath(self, x, y) -> np.ndarray:
        x0, y0 = frame_origin()
        cos, sin, limit = self.swath
        return cos * (x - x0) + sin * (y0 - y) > limit


def scene_pixels(index: int, weather: Weather, rng) -> tuple[np.ndarray, np.ndarray]:
    """Stored DN (uint16, 4 bands at 10 m) and SCL (uint8 at 20 m) of an acquisition on
    tile `index`."""
    x10, y10 = in_frame(index, RES)
    x20, y20 = in_frame(index, 2 * RES)
    bands, _ = ground(x10, y10)
    _, scl20 = ground(x20, y20)
    bands = bands + TILE_BIAS_DN[index] + rng.normal(0, 12, bands.shape)
    cloud20 = weather.clouds(x20, y20, CLOUD_EDGE_SHIFT_M[index])
    cloud10 = cloud20.repeat(2, 0).repeat(2, 1)
    bands[:, np.isin(cloud10, (8, 9))] += 4000
    bands[:, cloud10 == 10] += 900
    bands[:, cloud10 == 3] *= 0.45
    dn = np.clip(np.round(bands), 1, 64000).astype(np.uint16)
    dn[:, weather.off_swath(x10, y10)] = 0
    scl20 = np.where(cloud20 > 0, cloud20, scl20)
    scl20[weather.off_swath(x20, y20)] = 0
    return dn, scl20


def build_acquisition_world(root: Path, base_url: str) -> AcquisitionWorld:
    world = AcquisitionWorld(root=root, base_url=base_url)
    items = []
    for index, tile in enumerate(TILES):
        x0, y0 = tile_origin(index)
        world.tile_bounds[tile.name] = (
            f"EPSG:{tile.epsg}",
            (x0, y0 - SIZE * RES, x0 + SIZE * RES, y0),
        )
    for m_index, month in enumerate(MONTHS):
        for a_index, (day, platform, orbit, tiles) in enumerate(ACQUISITIONS):
            weather = Weather.draw(np.random.default_rng([m_index, a_index]))
            spec = SceneSpec(
                f"{month}-{day:02d}",
                platform,
                "05.09",
                True,
                -0.1,
                False,
                orbit,
                updated=f"{month}-28T00:00:00Z",
                tiles=tuple(TILES[i].name for i in tiles),
            )
            for index in tiles:
                rng = np.random.default_rng([m_index, a_index, index])
                items.append(publish(world, spec, index, *scene_pixels(index, weather, rng)))
    write_stac(world, {COLLECTION: items})
    write_aoi(world)
    return world


def publish(world: AcquisitionWorld, spec: SceneSpec, index: int, dn, scl) -> dict:
    tile = TILES[index]
    ident = scene_id(spec, tile.name)
    scene = TileScene(
        ident, tile.name, tile.epsg, spec, world.root / "cogs" / ident, shift_s=3 * index
    )
    x0, y0 = tile_origin(index)
    for i, band in enumerate(("blue", "green", "red", "nir")):
        write_cog(scene.path(band), dn[i], tile.epsg, from_origin(x0, y0, RES, RES), "average")
    write_cog(scene.path("scl"), scl, tile.epsg, from_origin(x0, y0, 2 * RES, 2 * RES), "nearest")
    world.scenes.append(scene)
    return stac_item(world, scene, tile, world.tile_bounds[tile.name][1], scl)


def write_aoi(world: AcquisitionWorld) -> None:
    """A quadrilateral over the three tiles and their overlaps, in the output CRS (a
    GeoPackage in EPSG:32615): the AOI's outline is then the same line for the workflow
    and the reference, whose reprojections of it would differ by centimetres. Corners
    off the 10 m lattice keep its edges off the pixel centres."""
    import geopandas

    x0, y0 = frame_origin()
    ring = [(153.7, 161.3), (4297.1, 243.9), (3508.3, 3693.7), (1311.9, 3604.1)]
    polygon = Polygon([(x0 + east, y0 - south) for east, south in ring])
    world.aoi_path = world.root / "aoi" / "aoi_32615.gpkg"
    world.aoi_path.parent.mkdir(parents=True, exist_ok=True)
    frame = geopandas.GeoDataFrame({"name": ["quadrilateral"]}, geometry=[polygon], crs=FRAME)
    frame.to_file(world.aoi_path, driver="GPKG")
