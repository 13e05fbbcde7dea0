"""A write that meets a full disk says so, names the disk and leaves nothing behind."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from conftest import fill, small_disk
from s2basemap.atomic import atomic_path, atomic_write_text
from s2basemap.disk import DiskFullError, human, mount_point


@pytest.fixture
def full_disk(tmp_path):
    """A 1 MB disk with 64 kB left, so that small writes still work."""
    with small_disk(tmp_path / "disk", "1m") as disk:
        filler = fill(disk)
        filler.write_bytes(b"\0" * (1024 * 1024 - 65536))
        yield disk


def test_text_too_large_for_the_disk_fails_naming_the_disk_and_its_space(full_disk):
    target = full_disk / "work" / "big.json"
    target.parent.mkdir()
    with pytest.raises(DiskFullError) as failed:
        atomic_write_text(target, "x" * 1_000_000)
    assert str(failed.value) == (
        f"the disk at {full_disk} is full (0 B free of 1.0 MB) writing {target}: "
        "free space there, then run the same command again"
    )
    assert list(target.parent.iterdir()) == []  # neither the file nor its part
    atomic_write_text(target, "small")  # what fits is written as ever
    assert target.read_text() == "small"


def test_a_raster_gdal_cannot_finish_fails_as_a_full_disk(full_disk):
    target = full_disk / "scene.tif"
    pixels = np.random.default_rng(0).integers(0, 10000, (4, 512, 512), dtype="uint16")
    profile = {
        "driver": "GTiff",
        "width": 512,
        "height": 512,
        "count": 4,
        "dtype": "uint16",
        "crs": "EPSG:32615",
        "transform": from_origin(0, 0, 10, 10),
        "compress": "deflate",
        "tiled": True,
    }
    with (
        pytest.raises(DiskFullError, match=f"the disk at {full_disk} is full"),
        atomic_path(target) as tmp,
        rasterio.open(tmp, "w", **profile) as dst,
    ):
        dst.write(pixels)  # 2 MB of noise that deflate cannot shrink below 1 MB
    assert sorted(p.name for p in full_disk.iterdir()) == ["filler"]


def mask_profile(size: int) -> dict:
    return {
        "driver": "GTiff",
        "width": size,
        "height": size,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32615",
        "transform": from_origin(0, 0, 10, 10),
        "compress": "deflate",
    }


def test_a_small_raster_gdal_closes_without_error_on_a_full_disk_is_caught(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        filler = fill(disk)
        target = disk / "mask.tif"
        # what GDAL itself does there: no exception, an empty file
        with rasterio.open(disk / "bare.tif", "w", **mask_profile(300)) as dst:
            dst.write(np.zeros((1, 300, 300), "uint8"))
        assert (disk / "bare.tif").stat().st_size == 0
        (disk / "bare.tif").unlink()
        with (
            pytest.raises(DiskFullError, match=f"the disk at {disk} is full \\(0 B free"),
            atomic_path(target) as tmp,
            rasterio.open(tmp, "w", **mask_profile(300)) as dst,
        ):
            dst.write(np.zeros((1, 300, 300), "uint8"))
        assert [p.name for p in disk.iterdir()] == ["filler"]
        # with room for it, the same raster on the nearly full disk reads back and is kept
        filler.write_bytes(b"\0" * (1024 * 1024 - 65536))
        with atomic_path(target) as tmp, rasterio.open(tmp, "w", **mask_profile(300)) as dst:
            dst.write(np.full((1, 300, 300), 7, "uint8"))
        with rasterio.open(target) as src:
            assert (src.read(1) == 7).all()


def test_other_failures_are_not_taken_for_a_full_disk(tmp_path):
    with pytest.raises(ValueError, match="not a disk"), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("partial")
        raise ValueError("not a disk problem")
    assert list(tmp_path.iterdir()) == []


def test_mount_point_and_sizes(tmp_path):
    with small_disk(tmp_path / "disk", "1m") as disk:
        (disk / "a" / "b").mkdir(parents=True)
        assert mount_point(disk / "a" / "b") == disk
    assert mount_point("/") == mount_point("/proc/..")
    assert [human(n) for n in (0, 999, 1000, 1_500_000, 2e12, 3e15)] == [
        "0 B",
        "999 B",
        "1.0 kB",
        "1.5 MB",
        "2.0 TB",
        "3000.0 TB",
    ]
