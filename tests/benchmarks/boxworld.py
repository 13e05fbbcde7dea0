"""A month in miniature for the box benchmark: full-size Sentinel-2 scenes laid out as
Earth Search's Collection 1 serves them, and a loopback HTTP server with a bandwidth cap.

- MGRS tiles of 10980 x 10980 px at 10 m in UTM zones 15 and 16 (neighbours across
  the zone boundary near 90 W, as in Arkansas and Mississippi);
- per tile four reflectance COGs (blue, green, red, NIR: uint16, deflate level 9 with
  predictor 2, 1024 px blocks, average overviews, nodata 0) shared by every date, and
  per date an SCL COG at 20 m (512 px blocks) whose clouds and shadows differ by date;
- reflectance is a smooth field plus noise whose deflate ratio (about 0.67 of raw)
  matches real Collection 1 tiles (0.66, see shared/reference/facts.md): smooth
  synthetic fields compress far better and decode faster than real data;
- clouds are thresholded two-octave noise with correlation lengths of about 10 and
  2 km (blobs of about 1-20 km), shadows the clouds shifted by about 1 km; together
  about 40 % of the pixels.

The server reads only the requested byte range from disk and paces its writes with a
token bucket shared by all connections, so `gbps` caps the total throughput.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

RES = 10
EDGE = 10980  # px of a full MGRS tile at 10 m
# (UTM EPSG, left, top) of each MGRS tile, in the order --tiles takes them: the first
# two straddle the zone boundary, so any two tiles already span both zones
TILES = (
    ("15SYV", 32615, 699960, 3900000),
    ("16SBD", 32616, 199980, 3900000),
    ("15SYU", 32615, 699960, 3800040),
    ("16SBC", 32616, 199980, 3800040),
    ("15SXV", 32615, 600000, 3900000),
    ("16SCD", 32616, 300000, 3900000),
)
BANDS = ("blue", "green", "red", "nir")
# DN ranges per band (with the +1000 offset of baseline >= 04.00, as Collection 1 has)
BAND_RANGES = {
    "blue": (1300, 2600),
    "green": (1400, 3000),
    "red": (1350, 3400),
    "nir": (2500, 6000),
}
NOISE_DN = 60  # sets the deflate ratio: 60 DN gives 0.67 of raw (real tiles: 0.66)
CLOUD_FRACTION = 0.33
SHADOW_SHIFT_PX = (40, 55)  # at 20 m: about 1.4 km, the sun's offset of a low cloud's shadow
SCL_CLEAR, SCL_SHADOW, SCL_CLOUD_MEDIUM, SCL_CLOUD_HIGH = 4, 3, 8, 9
WORLD_FILE = "world.json"


@dataclass(frozen=True)
class WorldSpec:
    tiles: int
    dates: int
    edge: int = EDGE
    seed: int = 0

    def tile_list(self):
        if not 1 <= self.tiles <= len(TILES):
            raise ValueError(f"--tiles must be 1 to {len(TILES)}")
        return TILES[: self.tiles]


def reflectance(
    rng, edge: int, low: int, high: int, noise: float = NOISE_DN, width: int | None = None
) -> np.ndarray:
    """A smooth field (bilinear over 256 px cells) plus Gaussian noise, uint16 >= 1; `edge`
    rows and `width` (default `edge`) columns."""
    from scipy.ndimage import zoom

    width = width or edge
    coarse = rng.random((edge // 256 + 2, width // 256 + 2), dtype=np.float32)
    field = zoom(coarse, 256, order=1)[:edge, :width]
    field *= high - low
    field += low
    field += rng.standard_normal((edge, width), dtype=np.float32) * noise
    return np.clip(field, 1, 65535).astype(np.uint16)


def octave(rng, edge: int, cell: int) -> np.ndarray:
    from scipy.ndimage import zoom

    cells = edge // cell + 2
    return zoom(rng.standard_normal((cells, cells)).astype(np.float32), cell, order=1)[:edge, :edge]


def scl_with_clouds(rng, edge20: int) -> np.ndarray:
    """SCL at 20 m: clear land, cloud blobs (medium and high probability) and their shadows."""
    km = 1000 // (2 * RES)  # px of 20 m per km
    field = octave(rng, edge20, 10 * km) + 0.5 * octave(rng, edge20, 2 * km)
    threshold = np.quantile(field[::16, ::16], 1 - CLOUD_FRACTION)
    cloud = field > threshold
    scl = np.full((edge20, edge20), SCL_CLEAR, dtype=np.uint8)
    dy, dx = SHADOW_SHIFT_PX
    shadow = np.zeros_like(cloud)
    shadow[dy:, dx:] = cloud[:-dy, :-dx]
    scl[shadow & ~cloud] = SCL_SHADOW
    scl[cloud] = SCL_CLOUD_MEDIUM
    scl[field > threshold + 0.6 * (field.max() - threshold)] = SCL_CLOUD_HIGH
    return scl


def write_cog(path: Path, data: np.ndarray, epsg: int, left: float, top: float, res: int) -> None:
    """Earth Search's layout: deflate level 9, predictor 2, average overviews, nodata 0;
    1024 px blocks at 10 m, 512 px at 20 m."""
    import rasterio
    import rasterio.shutil
    from affine import Affine

    scratch = path.with_name(f".{path.name}.scratch.tif")
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": f"EPSG:{epsg}",
        "transform": Affine(res, 0, left, 0, -res, top),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
    with rasterio.open(scratch, "w", **profile) as dst:
        dst.write(data, 1)
    tmp = path.with_name(f".{path.name}.tmp")
    rasterio.shutil.copy(
        scratch,
        tmp,
        driver="COG",
        BLOCKSIZE=1024 if res == RES else 512,
        COMPRESS="DEFLATE",
        LEVEL=9,
        PREDICTOR="YES",
        OVERVIEW_RESAMPLING="AVERAGE",
    )
    scratch.unlink()
    os.replace(tmp, path)


def _reflectance_job(root: str, tile: tuple, band: str, edge: int, seed: int) -> None:
    name, epsg, left, top = tile
    rng = np.random.default_rng([seed, TILES.index(tile), BANDS.index(band)])
    write_cog(
        Path(root) / name / f"{band}.tif",
        reflectance(rng, edge, *BAND_RANGES[band]),
        epsg,
        left,
        top,
        RES,
    )


def _scl_job(root: str, tile: tuple, date: int, edge: int, seed: int) -> None:
    name, epsg, left, top = tile
    rng = np.random.default_rng([seed, TILES.index(tile), 100 + date])
    scl = scl_with_clouds(rng, edge // 2)
    write_cog(Path(root) / name / f"scl_{date:02d}.tif", scl, epsg, left, top, 2 * RES)


def generate(root: Path, spec: WorldSpec, workers: int) -> dict:
    """Write the world (or reuse one written with the same spec); its description."""
    root.mkdir(parents=True, exist_ok=True)
    described = root / WORLD_FILE
    if described.exists() and json.loads(described.read_text())["spec"] == asdict(spec):
        return json.loads(described.read_text())
    started = time.perf_counter()
    jobs = [
        (_reflectance_job, (str(root), tile, band, spec.edge, spec.seed))
        for tile in spec.tile_list()
        for band in BANDS
    ] + [
        (_scl_job, (str(root), tile, date, spec.edge, spec.seed))
        for tile in spec.tile_list()
        for date in range(spec.dates)
    ]
    for tile in spec.tile_list():
        (root / tile[0]).mkdir(exist_ok=True)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for future in [pool.submit(func, *args) for func, args in jobs]:
            future.result()
    world = {
        "spec": asdict(spec),
        "generation_s": round(time.perf_counter() - started, 1),
        "workers": workers,
        "bytes": sum(p.stat().st_size for p in root.rglob("*.tif")),
    }
    described.write_text(json.dumps(world, indent=1))
    return world


def scenes(spec: WorldSpec, url: str, period: str = "2025-06") -> list[dict]:
    """Manifest records of the world's scenes (one per tile and date), assets on `url`."""
    from pyproj import Transformer

    records = []
    for name, epsg, left, top in spec.tile_list():
        to_wgs84 = Transformer.from_crs(epsg, 4326, always_xy=True)
        right, bottom = left + spec.edge * RES, top - spec.edge * RES
        xs, ys = to_wgs84.transform([left, right, right, left], [top, top, bottom, bottom])
        for date in range(spec.dates):
            day = 1 + date * 28 // max(spec.dates, 1)
            assets = {band: f"{url}/{name}/{band}.tif" for band in BANDS}
            records.append(
                {
                    "id": f"S2B_T{name}_{period.replace('-', '')}{day:02d}T165419_L2A",
                    "datetime": f"{period}-{day:02d}T16:54:19Z",
                    "mgrs_tile": name,
                    "crs": f"EPSG:{epsg}",
                    "bbox": [min(xs), min(ys), max(xs), max(ys)],
                    "assets": assets | {"scl": f"{url}/{name}/scl_{date:02d}.tif"},
                    "offset": {"dn": -1000, "source": "metadata", "reason": "baseline 05.11"},
                    # one datatake per date: it crosses every tile, overlapping as real
                    # MGRS tiles do (s2basemap.acquisitions)
                    "datatake_id": f"GS2B_{period.replace('-', '')}{day:02d}T165419_0{date:05d}_N05.11",
                    "tile_extent": {"crs": f"EPSG:{epsg}", "bounds": [left, bottom, right, top]},
                }
            )
    return records


def aoi_of(spec: WorldSpec):
    """The union of the tiles' footprints, in WGS84: every scene is whole inside it."""
    from pyproj import CRS
    from shapely.geometry import box
    from shapely.ops import unary_union

    from s2basemap.aoi import AOI, reproject_geometry

    parts = [
        reproject_geometry(
            box(left, top - spec.edge * RES, left + spec.edge * RES, top),
            CRS.from_epsg(epsg),
            CRS.from_epsg(4326),
        )
        for _, epsg, left, top in spec.tile_list()
    ]
    return AOI(unary_union(parts), CRS.from_epsg(4326))


# --- the server ------------------------------------------------------------------------------

RANGE = re.compile(r"bytes=(\d+)-(\d*)")
CHUNK = 1 << 20


class Pacer:
    """A token bucket shared by every connection: at most `gbps` in all (0: no cap)."""

    def __init__(self, gbps: float):
        self.rate = gbps * 1e9 / 8
        self.lock = threading.Lock()
        self.next_free = time.monotonic()

    def wait(self, size: int) -> None:
        if not self.rate:
            return
        with self.lock:
            start = max(time.monotonic(), self.next_free)
            self.next_free = start + size / self.rate
            due = self.next_free
        delay = due - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def serve(root: str, gbps: float, sent, ready) -> None:
    """Serve `root` on 127.0.0.1 until terminated; `sent` counts body bytes (a shared value)."""
    pacer = Pacer(gbps)
    base = Path(root).resolve()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _file(self) -> Path | None:
            path = (base / self.path.split("?")[0].lstrip("/")).resolve()
            if base not in path.parents or not path.is_file():
                self.send_error(404)
                return None
            return path

        def do_HEAD(self):
            path = self._file()
            if path:
                self.send_response(200)
                self.send_header("Content-Length", str(path.stat().st_size))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()

        def do_GET(self):
            path = self._file()
            if not path:
                return
            size = path.stat().st_size
            match = RANGE.fullmatch(self.headers.get("Range", "") or "")
            start, end = 0, size - 1
            if match:
                start = int(match.group(1))
                end = min(int(match.group(2)) if match.group(2) else size - 1, size - 1)
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            with open(path, "rb") as handle:
                handle.seek(start)
                left = end - start + 1
                while left > 0:
                    data = handle.read(min(CHUNK, left))
                    pacer.wait(len(data))
                    self.wfile.write(data)
                    left -= len(data)
            with sent.get_lock():
                sent.value += end - start + 1

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    ready.put(f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.serve_forever()


class Served:
    """The world served by a process of its own (its CPU is not the workflow's)."""

    def __init__(self, root: Path, gbps: float):
        context = multiprocessing.get_context("spawn")
        self.sent = context.Value("Q", 0)
        ready = context.Queue()
        self.process = context.Process(
            target=serve, args=(str(root), gbps, self.sent, ready), daemon=True
        )
        self.process.start()
        self.url = ready.get(timeout=120)
        self.gbps = gbps

    def bytes_sent(self) -> int:
        with self.sent.get_lock():
            return int(self.sent.value)

    def stop(self) -> None:
        self.process.terminate()
        self.process.join(10)


def full_resolution_bytes(path: Path) -> int:
    """Bytes of a COG's full-resolution tiles (what a whole-scene window needs)."""
    import rasterio

    with rasterio.open(path) as src:
        rows, cols = src.block_shapes[0]
        total = 0
        for y in range(math.ceil(src.height / rows)):
            for x in range(math.ceil(src.width / cols)):
                total += int(src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1) or 0)
    return total
