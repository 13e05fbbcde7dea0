"""Atomic writes: a reader sees the old file or the whole new one, and no litter stays."""

from __future__ import annotations

from s2basemap.atomic import atomic_write_text


def test_a_killed_writers_part_file_is_cleared_by_the_next_write(tmp_path):
    stale = tmp_path / ".out.json.abc123.part"  # what SIGKILL leaves behind
    stale.write_text("half")
    atomic_write_text(tmp_path / "out.json", "whole")
    assert (tmp_path / "out.json").read_text() == "whole"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]
