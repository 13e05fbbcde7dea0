"""Counting bytes on disk while jobs write."""

from __future__ import annotations

import os

from s2basemap.storage import bytes_under


def test_bytes_under_counts_regular_files_only(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.tif").write_bytes(b"1" * 1000)
    (tmp_path / "y.json").write_bytes(b"2" * 24)
    (tmp_path / "link").symlink_to(tmp_path / "y.json")
    assert bytes_under(tmp_path) == 1024
    assert bytes_under(tmp_path / "missing") == 0


def test_a_file_that_vanishes_while_counting_is_skipped(tmp_path, monkeypatch):
    """The race seen in a real run: a .part file listed, then renamed before its stat."""
    (tmp_path / "scene.tif").write_bytes(b"1" * 500)
    part = tmp_path / ".scene2.tif.abc.part"
    part.write_bytes(b"2" * 700)
    real_lstat = os.lstat

    def rename_first(path, *args, **kwargs):
        if str(path) == str(part) and part.exists():  # the writer finishes just now
            part.rename(tmp_path / "scene2.tif")
        return real_lstat(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", rename_first)
    assert bytes_under(tmp_path) == 500  # the renamed file was listed under its old name
    assert bytes_under(tmp_path) == 1200  # and is counted once it is found again


def _month(rasters, masks, tiles, outputs):
    return {"scene_raster_bytes": rasters, "mask_bytes": masks, "tile_bytes": tiles,
            "output_bytes": outputs}


def test_months_in_flight_bound_the_peak_to_the_newest_months_rasters():
    from s2basemap.storage import peak_bytes

    months = {"2025-01": _month(100, 2, 4, 5), "2025-02": _month(150, 3, 4, 5),
              "2025-03": _month(120, 2, 4, 5)}
    kept = 2 + 3 + 2 + 3 * (4 + 5)
    # one month at a time: March's rasters beside everything January and February keep,
    # or February's beside January's
    one = max(100 + 11, 150 + 12 + 11, 120 + 11 + 11 + 12)
    assert peak_bytes(months, False, 1) == (one, kept)
    two = max(100 + 11, 100 + 150 + 11 + 12, 150 + 120 + 11 + 12 + 11)
    assert peak_bytes(months, False, 2) == (two, kept)
    # no limit: every month's rasters and masks at once, plus the largest tiles and products
    assert peak_bytes(months, False, None) == (370 + 7 + 9, kept)
    assert peak_bytes(months, True, 1) == (kept + 370, kept + 370)
