"""Manifest lookups that the DAG build leans on."""

from __future__ import annotations

import numpy as np
from shapely.geometry import box

from s2basemap.manifest import scenes_by_tile


def test_scenes_by_tile_equals_testing_every_pair_in_manifest_order():
    rng = np.random.default_rng(3)
    scenes = []
    for i in range(300):
        x, y = rng.uniform(-95, -89), rng.uniform(33, 37)
        scenes.append(
            {
                "id": f"S2A_{i:03d}",
                "bbox": [x, y, x + rng.uniform(0.1, 1.3), y + rng.uniform(0.1, 1.0)],
            }
        )
    tiles = {}
    for i in range(200):
        x, y = rng.uniform(-95, -89), rng.uniform(33, 37)
        tiles[f"{i:04d}"] = box(x, y, x + 0.2, y + 0.2)
    tiles["far"] = box(10, 10, 11, 11)
    index = scenes_by_tile({"scenes": scenes}, tiles)
    for tile, footprint in tiles.items():
        expected = [s["id"] for s in scenes if footprint.intersects(box(*s["bbox"]))]
        assert index[tile] == expected
    assert index["far"] == [] and sum(map(len, index.values())) > 200
