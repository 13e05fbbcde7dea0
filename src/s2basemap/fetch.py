"""Fetch one scene: the AOI's window of five bands, read by HTTP range requests.

Only the blocks under the AOI's bounding box are read (GDAL /vsicurl/), SCL is
brought from 20 m to the 10 m grid by nearest neighbour, pixels outside the AOI
polygon become nodata (0), and reflectance is harmonised to the pre-04.00
convention. The result is one tiled, compressed GeoTIFF per scene plus a
record (JSON) that says what happened. A scene whose file is unreadable gets a
"failed" record and is left out of its period; one the network keeps from us
fails its job, so its month waits for it (see s2basemap.failures).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.errors import RasterioError
from rasterio.features import geometry_mask
from rasterio.windows import Window, from_bounds
from shapely.geometry import box

from s2basemap import failures
from s2basemap.aoi import AOI
from s2basemap.atomic import atomic_path, atomic_write_json, remove_parts
from s2basemap.failures import PERMANENT, TRANSIENT, OutageWatch, SceneUnavailable, error_text
from s2basemap.radiometry import decide_offset, harmonise, pixel_verdict
from s2basemap.search import BANDS, REFLECTANCE_BANDS
from s2basemap.signing import Signer, unsigned
from s2basemap.stall import StallGuard, watched

log = logging.getLogger(__name__)

STRIP_ROWS = 1024  # rows per read/write step: bounds memory to ~50 MB per strip
SAMPLE_EDGE = 512  # edge of the decimated sample used to check the offset
# The fetch keeps this many source pixels beyond the AOI: an output pixel inside
# the AOI may take its value from a source pixel whose centre lies just outside
# (nearest), or from its neighbours (bilinear, cubic). The exact clip is on the
# output grid, in the composite.
MARGIN_PIXELS = 3


@dataclass(frozen=True)
class FetchOptions:
    retries: int = 4
    backoff_seconds: float = 2.0
    timeout_seconds: int = 60
    offset_check_threshold: float = 0.05
    outage_after: int | None = 8
    stall_seconds: float = 600.0

    @classmethod
    def from_config(cls, fetch_config: dict) -> FetchOptions:
        return cls(**{k: fetch_config[k] for k in cls.__dataclass_fields__ if k in fetch_config})


def gdal_http_options(options: FetchOptions) -> dict:
    """GDAL settings for remote COGs: range reads only, retries on transient HTTP errors.

    TLS verification stays on: GDAL_HTTP_UNSAFESSL is never set.
    """
    return {
        "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per open
        "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.TIF,.tiff,.TIFF",
        "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
        "GDAL_HTTP_MULTIPLEX": "YES",
        "VSI_CACHE": "TRUE",
        "GDAL_HTTP_MAX_RETRY": str(options.retries),
        "GDAL_HTTP_RETRY_DELAY": str(max(options.backoff_seconds, 0.1)),
        "GDAL_HTTP_RETRY_CODES": "429,500,502,503,504",
        "GDAL_HTTP_TIMEOUT": str(options.timeout_seconds),
        "GDAL_HTTP_CONNECTTIMEOUT": str(min(options.timeout_seconds, 30)),
    }


def fetch_spec(scene: dict) -> dict:
    """The part of a manifest record that decides the fetched pixels (the job's params)."""
    return {key: scene[key] for key in ("id", "assets", "offset")}


def fetch_scene_job(
    spec: dict,
    aoi: AOI,
    tif_path,
    record_path,
    ledger_path,
    options: FetchOptions,
    outage_path,
    signer: Signer | None = None,
    log_path=None,
) -> None:
    """One fetch job: the scene's record written, or its transient failure noted in the
    period's ledger (for the run's closing lines) and raised, which fails the job.

    A read that makes no progress for `options.stall_seconds` ends the job's process
    (`stalled`): a read blocked in C cannot be interrupted otherwise.
    """
    outage = OutageWatch(outage_path, options.outage_after)
    on_stall = stalled(spec["id"], tif_path, ledger_path, outage, options, log_path)
    try:
        with StallGuard(options.stall_seconds, on_stall):
            record = fetch_scene(spec, aoi, tif_path, options, outage, signer)
    except SceneUnavailable as exc:
        failures.note_failure(ledger_path, exc.entry)
        raise
    failures.clear_failure(ledger_path)
    atomic_write_json(record_path, record)


def stalled(scene_id: str, tif_path, ledger_path, outage: OutageWatch, options, log_path):
    """What a fetch job does when a read stalls: note it as a network failure (the run's
    closing lines list it), remove the half-written raster, say so in one line and end
    the process with status 1, so that the profile's retry or the next run reads the
    scene again."""

    def on_stall(what: str, seconds: float) -> None:
        reason = (
            f"the read of {what} made no progress for {seconds:.0f} s "
            f"(fetch.stall_seconds: {options.stall_seconds:g})"
        )
        failures.note_failure(ledger_path, SceneUnavailable(scene_id, reason, 1).entry)
        outage.failed(reason)
        remove_parts(tif_path)
        log.error("%s: %s; the job ends so that the scene is read again", scene_id, reason)
        where = f" (log: {log_path})" if log_path else ""
        print(
            f"ERROR {scene_id}: {reason}; the job ends so that the scene is read again{where}",
            file=sys.stderr,
            flush=True,
        )
        for handler in logging.getLogger().handlers:
            handler.flush()
        os._exit(1)

    return on_stall


def fetch_scene(
    spec: dict,
    aoi: AOI,
    tif_path,
    options: FetchOptions,
    outage: OutageWatch | None = None,
    signer: Signer | None = None,
) -> dict:
    """Fetch with retries and backoff, and return the scene's record; the GeoTIFF is
    written when the record says ok.

    A permanent failure (the file's own) gives a "failed" record and a placeholder:
    the scene is left out. A transient one (the network's) raises SceneUnavailable
    once the retries are spent, or at once while `outage` says the source is down.
    With a `signer` the hrefs are signed as they are opened, and a refused
    signature (HTTP 403) is renewed for the next attempt.
    """
    outage, signer = outage or OutageWatch(), signer or Signer()
    error, last, kind, renewed = None, None, None, False
    for attempt in range(options.retries + 1):
        down = outage.down()
        if down:
            raise SceneUnavailable(spec["id"], f"gave up: {down}", attempt)
        if attempt:
            delay = options.backoff_seconds * 2 ** (attempt - 1)
            log.warning(
                "%s: attempt %d failed (%s); retrying in %.1f s", spec["id"], attempt, last, delay
            )
            time.sleep(delay)
        try:
            record = _fetch_once(spec, aoi, tif_path, options, signer, fresh=attempt > 0)
        except (RasterioError, OSError) as exc:
            error, last, kind = exc, describe(exc), failures.classify(error_text(exc))
            refused = signer.signs and "HTTP response code: 403" in error_text(exc)
            if refused and not renewed and attempt < options.retries:
                log.warning("%s: signature refused (%s); signing again", spec["id"], last)
                signer.renew()
                renewed = True
                continue
            if kind == PERMANENT and failures.NOT_A_TIFF in error_text(exc):
                kind, last = _settle_not_a_tiff(exc, last, options, signer)
            if kind == PERMANENT:
                break
            renewed = False
            continue
        outage.answered()
        return record | {"attempts": attempt + 1}
    attempts = attempt + 1
    if kind is None:  # a short read: cut in transit, or a short file?
        kind, last = _settle_short_read(error, last, options, signer)
    if kind == TRANSIENT:
        if isinstance(error, SceneReadError):  # the source's doing, not (say) a full local disk
            outage.failed(last)
        raise SceneUnavailable(
            spec["id"], f"unreadable after {_attempts(attempts)}: {last}", attempts
        )
    outage.answered()
    return _left_out(spec["id"], tif_path, last, attempts, signer)


def _left_out(scene_id: str, tif_path, last: str, attempts: int, signer: Signer) -> dict:
    """The record (and placeholder raster) of a scene whose file is unreadable."""
    reason = f"unreadable ({PERMANENT}) after {_attempts(attempts)}: {last}"
    if "HTTP response code: 403" in last:
        hint = (
            "a new signature was refused too"
            if signer.signs
            else "the URL is unsigned: does the source need signed URLs? See stac.source"
        )
        reason += f" (access refused; {hint})"
    log.error("%s: left out of its period: %s", scene_id, reason)
    write_placeholder(tif_path, "failed")
    return {
        "id": scene_id,
        "status": "failed",
        "kind": PERMANENT,
        "reason": reason,
        "attempts": attempts,
    }


def _attempts(n: int) -> str:
    return f"{n} attempt{'s' * (n != 1)}"


def describe(exc: BaseException) -> str:
    """A failed read in one line: the band and href, and GDAL's own words for what went wrong."""
    text = unsigned(error_text(exc))
    if isinstance(exc, SceneReadError):
        # "red (href): Read failed. See previous exception ... <- <the detail>": keep the detail
        detail = text.split(" <- ")[-1] if " <- " in text else unsigned(str(exc.__cause__ or ""))
        return f"{exc.band} ({exc.href}): {detail}" if detail else str(exc)
    return text.split(" <- ")[-1]


def _settle_short_read(exc, last: str, options: FetchOptions, signer: Signer) -> tuple[str, str]:
    """A read came back short on every attempt: permanent when the file on the server is
    shorter than its own tile index says, transient otherwise (the bytes are there)."""
    if not isinstance(exc, SceneReadError):
        return TRANSIENT, last
    try:
        href = signer.sign(exc.href)
        size, needed = file_size(href, options), tiff_extent(href, options)
    except (RasterioError, OSError) as probe_error:
        return (
            TRANSIENT,
            f"{last}; its size could not be checked: {unsigned(error_text(probe_error))}",
        )
    if size is not None and needed is not None and size < needed:
        return (
            PERMANENT,
            f"{exc.band} ({exc.href}): truncated file: {size:,} bytes of the {needed:,} its tiles need",
        )
    return TRANSIENT, last


def _settle_not_a_tiff(exc, last: str, options: FetchOptions, signer: Signer) -> tuple[str, str]:
    """GDAL says "not recognized" also when its own retries of a reset connection ran
    out (it logs "HTTP error code: 0" and raises nothing of it): the file is not a
    TIFF only when the server hands over its first bytes and they are not a TIFF's."""
    if not isinstance(exc, SceneReadError):
        return PERMANENT, last
    try:
        start = file_start(signer.sign(exc.href), options)
    except OSError as probe_error:
        # a refusal (HTTP 404) is the file's; a reset or a timeout the network's
        kind = failures.classify(str(probe_error)) or TRANSIENT
        return kind, f"{last}; its first bytes could not be read: {unsigned(str(probe_error))}"
    if start.startswith(TIFF_MAGIC):
        return TRANSIENT, f"{last}; the server now serves a TIFF there"
    return PERMANENT, f"{last} (the file starts with {start[:8]!r})"


# little- and big-endian TIFF and BigTIFF
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def file_start(href: str, options: FetchOptions, size: int = 8) -> bytes:
    """The file's first bytes, as its server serves them now (network errors raise)."""
    import requests

    try:
        with requests.get(
            href,
            headers={"Range": f"bytes=0-{size - 1}"},
            timeout=options.timeout_seconds,
            stream=True,
        ) as response:
            if response.status_code >= 400:
                raise OSError(f"GET {href}: HTTP response code: {response.status_code}")
            return response.raw.read(size)
    except requests.RequestException as exc:
        raise OSError(f"GET {href}: {exc}") from exc


def file_size(href: str, options: FetchOptions) -> int | None:
    """The file's size as its server tells it now (HTTP HEAD), or None when it does not say."""
    import requests

    try:
        response = requests.head(href, timeout=options.timeout_seconds, allow_redirects=True)
    except requests.RequestException as exc:
        raise OSError(f"HEAD {href}: {exc}") from exc
    if response.status_code >= 400:
        raise OSError(f"HEAD {href}: HTTP response code: {response.status_code}")
    length = response.headers.get("Content-Length")
    return int(length) if length is not None else None


def tiff_extent(href: str, options: FetchOptions) -> int | None:
    """The bytes the TIFF's full-resolution tiles reach to, from its own tile index."""
    with (
        rasterio.Env(**gdal_http_options(options)),
        watched(f"the tile index of {unsigned(href)}"),
        rasterio.open(href) as src,
    ):
        rows, cols = src.block_shapes[0]
        ends = []
        for y in range(math.ceil(src.height / rows)):
            for x in range(math.ceil(src.width / cols)):
                offset = src.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=1)
                size = src.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=1)
                if offset and size:
                    ends.append(int(offset) + int(size))
    return max(ends) if ends else None


class SceneReadError(OSError):
    """Reading one band failed; the message names the band and its href."""

    def __init__(self, band: str, href: str, message: str):
        super().__init__(message)
        self.band, self.href = band, href


@contextmanager
def naming(band: str, href: str):
    """Re-raise GDAL's terse errors ("HTTP response code: 404") with the band and URL, and
    time the read against the job's stall guard (s2basemap.stall)."""
    try:
        with watched(f"{band} ({unsigned(href)})"):
            yield
    except RasterioError as exc:
        raise SceneReadError(band, href, unsigned(f"{band} ({href}): {exc}")) from exc


def _open_bands(stack: ExitStack, assets: dict, signer: Signer) -> dict:
    sources = {}
    for band in BANDS:
        with naming(band, assets[band]):
            sources[band] = stack.enter_context(rasterio.open(signer.sign(assets[band])))
    return sources


def _fetch_once(
    spec: dict, aoi: AOI, tif_path, options: FetchOptions, signer: Signer, fresh: bool = False
) -> dict:
    settings = gdal_http_options(options)
    if fresh:
        # GDAL remembers a failed open ("does not exist") and the bytes it read:
        # a retry must ask the server again
        settings["CPL_VSIL_CURL_NON_CACHED"] = "/vsicurl/"
    with rasterio.Env(**settings), ExitStack() as stack:
        sources = _open_bands(stack, spec["assets"], signer)
        grid = sources["red"]
        aoi_geom = aoi.in_crs(grid.crs).buffer(
            MARGIN_PIXELS * max(abs(grid.res[0]), abs(grid.res[1]))
        )
        window = scene_window(aoi_geom, grid, sources["scl"])
        if window is None:
            write_placeholder(tif_path, "no_overlap", grid.crs)
            return {
                "id": spec["id"],
                "status": "no_overlap",
                "reason": "scene does not overlap the AOI",
            }
        offset = _checked_offset(spec, sources, window, options)
        stats = _write_scene(sources, aoi_geom, window, offset["dn"], tif_path, spec["id"])
    log.info(
        "%s: %d x %d px, offset %+d DN (%s)",
        spec["id"],
        window.width,
        window.height,
        offset["dn"],
        offset["reason"],
    )
    return {
        "id": spec["id"],
        "status": "ok",
        "offset": offset,
        "crs": grid.crs.to_string(),
        "width": int(window.width),
        "height": int(window.height),
        "transform": list(grid.window_transform(window))[:6],
    } | stats


def scene_window(aoi_geom, grid, coarse) -> Window | None:
    """The AOI's window on the 10 m grid, snapped outward to whole pixels of the coarse (SCL) grid.

    Snapping keeps the 20 m SCL window whole, so its nearest-neighbour
    upsampling is an exact 2x repeat.
    """
    footprint = box(*grid.bounds)
    if not aoi_geom.intersects(footprint):
        return None
    minx, miny, maxx, maxy = aoi_geom.intersection(footprint).bounds
    coarse_win = from_bounds(minx, miny, maxx, maxy, transform=coarse.transform)
    col0 = max(math.floor(coarse_win.col_off + 1e-9), 0)
    row0 = max(math.floor(coarse_win.row_off + 1e-9), 0)
    col1 = min(math.ceil(coarse_win.col_off + coarse_win.width - 1e-9), coarse.width)
    row1 = min(math.ceil(coarse_win.row_off + coarse_win.height - 1e-9), coarse.height)
    if col1 <= col0 or row1 <= row0:
        return None
    snapped = coarse.window_bounds(Window(col0, row0, col1 - col0, row1 - row0))
    fine = from_bounds(*snapped, transform=grid.transform)
    col, row = round(fine.col_off), round(fine.row_off)
    width = min(round(fine.width), grid.width - col)
    height = min(round(fine.height), grid.height - row)
    return Window(col, row, width, height) if width > 0 and height > 0 else None


def _checked_offset(spec, sources, window, options) -> dict:
    """The manifest's offset (from the metadata) decided with a decimated sample of the
    scene's own blue, green and red pixels (s2basemap.radiometry)."""
    factor = max(1, math.ceil(max(window.width, window.height) / SAMPLE_EDGE))
    shape = (math.ceil(window.height / factor), math.ceil(window.width / factor))
    visible = np.empty((3, *shape), dtype=np.uint16)
    for i, band in enumerate(("blue", "green", "red")):
        with naming(band, sources[band].name):
            sources[band].read(1, window=window, out=visible[i], resampling=Resampling.nearest)
    scl = read_on_grid(sources["scl"], sources["red"], window, shape)
    pixels = pixel_verdict(visible, scl, options.offset_check_threshold)
    return decide_offset(spec["offset"], pixels)


def read_on_grid(source, grid, window: Window, shape) -> np.ndarray:
    """Read `source` over the ground area of `window` of `grid`, nearest-neighbour to `shape`."""
    bounds = grid.window_bounds(window)
    src_window = from_bounds(*bounds, transform=source.transform)
    with naming("scl", source.name):
        return source.read(1, window=src_window, out_shape=shape, resampling=Resampling.nearest)


def _write_scene(sources, aoi_geom, window: Window, offset_dn: int, tif_path, scene_id) -> dict:
    grid = sources["red"]
    profile = scene_profile(grid, window)
    aoi_pixels = valid_pixels = 0
    with atomic_path(tif_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.update_tags(
            SCENE_ID=scene_id,
            OFFSET_APPLIED_DN=str(offset_dn),
            REFLECTANCE="DN / 10000 (pre-04.00 convention)",
        )
        for i, band in enumerate(BANDS, start=1):
            dst.set_band_description(i, band)
        for row in range(0, int(window.height), STRIP_ROWS):
            strip = Window(
                window.col_off,
                window.row_off + row,
                window.width,
                min(STRIP_ROWS, window.height - row),
            )
            stack = np.empty((len(BANDS), strip.height, strip.width), dtype=np.uint16)
            for i, band in enumerate(REFLECTANCE_BANDS):
                with naming(band, sources[band].name):
                    sources[band].read(1, window=strip, out=stack[i])
                harmonise(stack[i], offset_dn, out=stack[i])
            stack[-1] = read_on_grid(sources["scl"], grid, strip, (strip.height, strip.width))
            inside = aoi_pixels_of(aoi_geom, grid, strip)
            if inside is None:  # the whole strip is in the AOI
                aoi_pixels += strip.height * strip.width
            else:
                stack[:, ~inside] = 0
                aoi_pixels += int(inside.sum())
            dst.write(stack, window=Window(0, row, strip.width, strip.height))
            # a pixel is valid when its smallest reflectance band is not nodata
            valid_pixels += int(np.count_nonzero(np.minimum.reduce(stack[:4])))
            log.info(
                "%s: rows %d-%d of %d written", scene_id, row, row + strip.height, window.height
            )
    return {"aoi_pixels": aoi_pixels, "valid_pixels": valid_pixels}


def aoi_pixels_of(aoi_geom, grid, strip: Window) -> np.ndarray | None:
    """The strip's pixels whose centres lie in the AOI, or None when all of them do.

    A state's scenes are mostly inside it: only strips that cross its border are
    rasterised.
    """
    if aoi_geom.contains(box(*grid.window_bounds(strip))):
        return None
    return geometry_mask(
        [aoi_geom],
        out_shape=(strip.height, strip.width),
        transform=grid.window_transform(strip),
        invert=True,
    )


def scene_profile(grid, window: Window) -> dict:
    return {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": len(BANDS),
        "width": int(window.width),
        "height": int(window.height),
        "crs": grid.crs,
        "transform": grid.window_transform(window),
        "nodata": 0,
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        # A scratch file, written once and read by a mask and a few composite jobs. On a
        # full scene of Collection 1-like entropy (tests/benchmarks/boxworld.py), zstd at
        # level 1, band by band, without a predictor, took 1.8 CPU s to write and 1.1 s to
        # read, for 711 MB; GDAL's default level 9, pixel-interleaved with predictor 2,
        # took 27 s and 5.2 s for 695 MB (level 1 with the predictor: 2.4 s, 3.1 s, 661 MB).
        "compress": "zstd",
        "zstd_level": 1,
        "interleave": "band",
        "bigtiff": "if_safer",
    }


def write_placeholder(tif_path, status: str, crs=None) -> None:
    """A 1x1 all-nodata GeoTIFF standing in for a scene that has no pixels to offer.

    Snakemake needs every declared output; this one contributes nothing to a
    composite even if read, and its record says why it exists.
    """
    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": len(BANDS),
        "width": 1,
        "height": 1,
        "crs": crs or "EPSG:4326",
        "transform": rasterio.transform.from_origin(0, 0, 10, 10),
        "nodata": 0,
    }
    with atomic_path(tif_path) as tmp, rasterio.open(tmp, "w", **profile) as dst:
        dst.write(np.zeros((len(BANDS), 1, 1), dtype=np.uint16))
        dst.update_tags(STATUS=status)
