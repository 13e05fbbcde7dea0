"""What produced a result: digests of the code behind each stage, software versions."""

from __future__ import annotations

import hashlib
import importlib.util
import platform


def code_digest(*modules: str) -> str:
    """A short digest of s2basemap modules' source, e.g. code_digest("composite", "percentile").

    Given to a rule as a param, it makes Snakemake rerun that stage's jobs when
    (and only when) the code behind the stage changes.
    """
    digest = hashlib.sha256()
    for name in modules:
        spec = importlib.util.find_spec(f"s2basemap.{name}")
        if spec is None or spec.origin is None:
            raise ModuleNotFoundError(f"s2basemap.{name}")
        with open(spec.origin, "rb") as handle:
            digest.update(handle.read())
    return digest.hexdigest()[:16]


def software_versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    import numpy
    import pyproj
    import rasterio

    import s2basemap

    versions = {"s2basemap": s2basemap.__version__, "python": platform.python_version(),
                "rasterio": rasterio.__version__, "gdal": rasterio.__gdal_version__,
                "numpy": numpy.__version__, "pyproj": pyproj.__version__}
    try:
        versions["omnicloudmask"] = version("omnicloudmask")
    except PackageNotFoundError:  # scl-only runs do not need it
        pass
    return versions
