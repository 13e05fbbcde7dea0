"""What produced a result: digests of the code behind each stage, software versions."""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import platform
from pathlib import Path

# Modules that decide only where a job's log lines go, or carry Snakemake's values
# to the package (the job adapter, whose lazy imports would otherwise make every
# rule depend on every module it can rebuild), never what a job writes: editing
# them must not rerun finished work.
NOT_RESULT_CODE = frozenset({"logs", "job"})


def code_digest(script: str | Path) -> str:
    """A short digest of the package code behind a workflow script: every s2basemap
    module it imports, directly or through other modules, at any depth.

    Given to a rule as a param, it makes Snakemake rerun that rule's jobs when
    (and only when) code that can change what they write changes.
    """
    digest = hashlib.sha256()
    for name in sorted(package_modules_behind(Path(script))):
        digest.update(name.encode() + b"\0" + _module_path(name).read_bytes())
    return digest.hexdigest()[:16]


def package_modules_behind(script: Path) -> set[str]:
    """The s2basemap modules (short names) that `script` imports, transitively, with
    those behind each object it asks the job adapter for (`j.aoi`: aoi, ...)."""
    found: set[str] = set()
    text = script.read_text()
    todo = list(_imported_modules(text) | _adapter_modules(text))
    while todo:
        name = todo.pop()
        if name in found or name in NOT_RESULT_CODE:
            continue
        found.add(name)
        todo += _imported_modules(_module_path(name).read_text())
    return found


def _adapter_modules(source: str) -> set[str]:
    """The modules behind the job adapter's objects that `source` uses (`<job>.grid`)."""
    from s2basemap.job import BUILT_FROM

    used = {
        node.attr
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
    }
    return {module for name in used & set(BUILT_FROM) for module in BUILT_FROM[name]}


def _imported_modules(source: str) -> set[str]:
    """Short names of the s2basemap modules `source` imports anywhere (functions included)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # a relative import: inside the package
                base = "s2basemap" + (f".{base}" if base else "")
            names |= {base} | {f"{base}.{alias.name}" for alias in node.names}
    modules = {n.split(".")[1] for n in names if n.startswith("s2basemap.")}
    return {m for m in modules if _module_spec(m) is not None}


def _module_spec(name: str):
    try:
        return importlib.util.find_spec(f"s2basemap.{name}")
    except ModuleNotFoundError:
        return None


def _module_path(name: str) -> Path:
    spec = _module_spec(name)
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(f"s2basemap.{name}")
    return Path(spec.origin)


def software_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import pyproj
    import rasterio

    import s2basemap

    versions = {
        "s2basemap": s2basemap.__version__,
        "python": platform.python_version(),
        "rasterio": rasterio.__version__,
        "gdal": rasterio.__gdal_version__,
        "numpy": numpy.__version__,
        "pyproj": pyproj.__version__,
    }
    try:
        versions["omnicloudmask"] = version("omnicloudmask")
    except PackageNotFoundError:  # scl-only runs do not need it
        pass
    return versions
