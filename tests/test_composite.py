"""s2basemap.composite: which scenes a composite job stacks."""

from __future__ import annotations

import pytest


def test_usable_scenes_follow_the_statistics_beside_each_mask(tmp_path):
    import json

    from s2basemap.composite import SceneInput, usable_scenes

    statuses = {"S2A_a": "ok", "S2B_b": "failed", "S2C_c": "ok"}
    scenes, masks, stats = [], [], []
    for scene_id, status in statuses.items():
        (tmp_path / f"{scene_id}.json").write_text(json.dumps({"id": scene_id, "status": status}))
        scenes.append(str(tmp_path / "scenes" / f"{scene_id}.tif"))
        masks.append(str(tmp_path / f"{scene_id}.tif"))
        stats.append(str(tmp_path / f"{scene_id}.json"))
    assert usable_scenes(scenes, masks, stats) == [
        SceneInput("S2A_a", scenes[0], masks[0]),
        SceneInput("S2C_c", scenes[2], masks[2]),
    ]
    with pytest.raises(ValueError):  # a scene without its mask is a wiring error
        usable_scenes(scenes, masks[:2], stats)
