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
