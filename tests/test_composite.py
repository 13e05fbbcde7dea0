"""s2basemap.composite: which scenes a composite job stacks."""

from __future__ import annotations

import pytest


def test_usable_scenes_follow_the_tags_of_each_mask(tmp_path):
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    from s2basemap.composite import SceneInput, usable_scenes
    from s2basemap.masks import mask_profile, write_empty_mask
    from s2basemap.masktags import usability_tags

    profile = {
        "driver": "GTiff",
        "dtype": "uint16",
        "count": 5,
        "width": 8,
        "height": 8,
        "crs": "EPSG:32615",
        "transform": from_origin(500000, 4000000, 10, 10),
    }
    statuses = {"S2A_a": "ok", "S2B_b": "failed", "S2C_c": "ok"}
    scenes, masks = [], []
    for scene_id, status in statuses.items():
        scene, mask = tmp_path / f"{scene_id}_scene.tif", tmp_path / f"{scene_id}.tif"
        with rasterio.open(scene, "w", **profile) as dst:
            dst.write(np.ones((5, 8, 8), dtype="uint16"))
        if status == "ok":  # as masks.mask_scene writes them
            with rasterio.open(mask, "w", **mask_profile(profile)) as dst:
                dst.write(np.zeros((1, 8, 8), dtype="uint8"))
                dst.update_tags(**usability_tags(scene_id, "ok"))
        else:
            write_empty_mask(scene, mask, scene_id)
        scenes.append(str(scene))
        masks.append(str(mask))
    assert usable_scenes(scenes, masks) == [
        SceneInput("S2A_a", scenes[0], masks[0]),
        SceneInput("S2C_c", scenes[2], masks[2]),
    ]
    with pytest.raises(ValueError):  # a scene without its mask is a wiring error
        usable_scenes(scenes, masks[:2])
