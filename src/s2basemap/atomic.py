"""Atomic writes: a reader sees the old file or the complete new one, never a part."""

from __future__ import annotations

import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from s2basemap.disk import check_complete, disk_full


@contextmanager
def atomic_path(path: str | Path):
    """Yield a temporary path beside `path`; rename it over `path` only on success."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A run killed mid-write (SIGKILL skips the cleanup below) leaves its part file;
    # only one job writes a given output, so older parts of this path are litter.
    remove_parts(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as exc:
        _raise_if_full(path, exc)
        raise
    os.close(fd)
    try:
        yield Path(tmp)
        check_complete(Path(tmp), path)  # GDAL can close a raster cut short by a full disk
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; finished files follow the umask
        os.replace(tmp, path)
    except Exception as exc:
        try:
            _raise_if_full(path, exc)  # asked before the part is removed: the disk as it failed
        finally:
            Path(tmp).unlink(missing_ok=True)
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_parts(path: str | Path) -> None:
    """Remove the part files of `path` that `atomic_path` writes: what a write that never
    finished left (a killed job, or one that ends itself mid-write)."""
    path = Path(path)
    for part in path.parent.glob(f".{glob.escape(path.name)}.*.part"):
        part.unlink(missing_ok=True)


def _raise_if_full(path: Path, exc: Exception) -> None:
    """A write that failed on a full disk says so, naming the disk (`s2basemap.disk`)."""
    full = disk_full(path, exc)
    if full:
        raise full from exc


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write_json(path: str | Path, doc) -> None:
    # Sorted keys and fixed indentation: equal content gives equal bytes.
    atomic_write_text(path, json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
