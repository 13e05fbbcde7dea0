"""Per-period manifests: the small JSON files that decide which scene jobs exist."""

from __future__ import annotations

import json
import logging
from functools import lru_cache
from pathlib import Path

from s2basemap.atomic import atomic_write_json

log = logging.getLogger(__name__)


def write_manifest(path: str | Path, manifest: dict) -> None:
    atomic_write_json(path, manifest)


def read_manifest(path: str | Path) -> dict:
    path = Path(path)
    stat = path.stat()
    return _read_cached(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=64)
def _read_cached(path: str, mtime_ns: int, size: int) -> dict:
    # Snakemake asks for the manifest once per scene job while building the DAG;
    # the (mtime, size) key rereads it only when it was rewritten.
    return json.loads(Path(path).read_text())


def load_json(path: str | Path):
    return json.loads(Path(path).read_text())


def scene_ids(manifest: dict) -> list[str]:
    return [scene["id"] for scene in manifest["scenes"]]


def column_scene_ids(tile_scenes: dict[str, list[str]]) -> list[str]:
    """The scenes of a column's tiles (tile id -> scene ids), each once, tiles in order:
    the order of a composite job's scene and mask inputs."""
    return list(dict.fromkeys(s for tile in sorted(tile_scenes) for s in tile_scenes[tile]))


def scenes_by_tile(manifest: dict, tile_footprints: dict) -> dict[str, list[str]]:
    """For each output tile (id -> WGS84 footprint), the ids of the manifest's scenes
    whose bounding box touches it, in manifest order.

    One spatial index per manifest: testing every scene against every tile was
    most of the DAG build of a state-sized year (400 tiles x 400 scenes a month).
    """
    from shapely import STRtree, box

    scenes = manifest["scenes"]
    tree = STRtree([box(*record["bbox"]) for record in scenes])
    return {
        tile: [scenes[i]["id"] for i in sorted(tree.query(footprint, predicate="intersects"))]
        for tile, footprint in tile_footprints.items()
    }


def scene(manifest: dict, scene_id: str) -> dict:
    for record in manifest["scenes"]:
        if record["id"] == scene_id:
            return record
    raise KeyError(f"scene {scene_id} is not in the manifest of {manifest['period']}")


def summarise_period(manifest_path, record_paths, stats_paths) -> dict:
    """A period's scenes after fetch and mask: usable ones with their statistics,
    and every scene left out on the way, with its reason."""
    manifest = read_manifest(manifest_path)
    records = [json.loads(Path(p).read_text()) for p in record_paths]
    stats = {s["id"]: s for s in (json.loads(Path(p).read_text()) for p in stats_paths)}
    usable, left_out = [], list(manifest["excluded"]) + list(manifest["duplicates_removed"])
    for record in records:
        if record["status"] == "ok":
            mask = stats[record["id"]]
            usable.append(
                {
                    "id": record["id"],
                    "offset": record["offset"],
                    "valid_fraction": mask["valid_fraction"],
                    "cloud_fraction": mask["cloud_fraction"],
                }
            )
        else:
            left_out.append(
                {"id": record["id"], "reason": f"{record['status']}: {record['reason']}"}
            )
    for entry in left_out:
        log.info("period %s: %s left out: %s", manifest["period"], entry["id"], entry["reason"])
    if not usable:
        log.warning("period %s: no usable scenes", manifest["period"])
    return {
        "period": manifest["period"],
        "status": "ok" if usable else "no_scenes",
        "scenes": usable,
        "left_out": sorted(left_out, key=lambda e: e["id"]),
    }


def write_period_summary(manifest_path, record_paths, stats_paths, path) -> None:
    """The period's `summarise_period`, written for its metadata."""
    atomic_write_json(path, summarise_period(manifest_path, record_paths, stats_paths))
