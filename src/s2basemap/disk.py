"""The disk under the work: sizes for people, and a full disk named as such.

A write that runs out of space fails deep in GDAL or libtiff with messages such as
"TIFFAppendToStrip: Write error" or "Write failed. See previous exception", which
do not say that the disk is full, or which disk. Worse, a small GeoTIFF (a mask) can
be closed without any error at all while libtiff's writes failed: GDAL reports them
on stderr only, and the file is left empty or cut short. The atomic writer
(`s2basemap.atomic`) turns the first into an error that names the disk, and asks
`check_complete` before it renames a raster written on a nearly full disk.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

# A write that fails while its disk has less than this free failed for want of space:
# GDAL's errors carry no errno, and the space a full disk reports is 0 or a few blocks.
FULL_BELOW_BYTES = 16 * 1024 * 1024
FULL_MESSAGES = ("No space left on device", "Free disk space available")
RASTER_SUFFIXES = {".tif", ".tiff", ".png"}  # written by GDAL, which can fail silently


class DiskFullError(RuntimeError):
    """A write failed because its disk is full; the message names the disk and its space."""


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1000
    return f"{n:.1f} TB"


def mount_point(path: str | Path) -> Path:
    """The mount point of the filesystem that holds `path` (an existing one)."""
    path = Path(os.path.realpath(path))
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def disk_full(target: str | Path, exc: BaseException) -> DiskFullError | None:
    """A `DiskFullError` for a failed write of `target` if its disk is full, else None.

    Asked before the failed write's partial file is removed, while the disk is as
    the write left it.
    """
    if isinstance(exc, DiskFullError):
        return None  # said already
    usage = shutil.disk_usage(Path(target).parent)
    said = getattr(exc, "errno", None) == errno.ENOSPC or any(m in str(exc) for m in FULL_MESSAGES)
    if not said and usage.free >= FULL_BELOW_BYTES:
        return None
    return _full(target, usage)


def check_complete(written: Path, target: str | Path) -> None:
    """Raise `DiskFullError` if the raster `written` for `target` on a nearly full disk
    does not read back whole. Elsewhere a write that failed raised; this costs one
    `statvfs` then."""
    usage = shutil.disk_usage(written.parent)
    if usage.free >= FULL_BELOW_BYTES or Path(target).suffix.lower() not in RASTER_SUFFIXES:
        return
    import rasterio

    try:
        with rasterio.open(written) as raster:
            for band in raster.indexes:
                raster.checksum(band)  # every block decoded: a cut one fails
    except Exception as exc:
        raise _full(target, usage) from exc


def _full(target: str | Path, usage) -> DiskFullError:
    return DiskFullError(
        f"the disk at {mount_point(Path(target).parent)} is full ({human(usage.free)} free of "
        f"{human(usage.total)}) writing {target}: free space there, then run the same "
        "command again"
    )
