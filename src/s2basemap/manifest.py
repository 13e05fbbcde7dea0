"""Per-period manifests: the small JSON files that decide which scene jobs exist."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from s2basemap.atomic import atomic_write_json


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


def scene_ids(manifest: dict) -> list[str]:
    return [scene["id"] for scene in manifest["scenes"]]


def scene(manifest: dict, scene_id: str) -> dict:
    for record in manifest["scenes"]:
        if record["id"] == scene_id:
            return record
    raise KeyError(f"scene {scene_id} is not in the manifest of {manifest['period']}")
