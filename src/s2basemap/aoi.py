"""The area of interest: read any vector file, validate it, merge it, reproject it."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import mapping, shape
from shapely.geometry.base import BaseGeometry

from s2basemap.atomic import atomic_write_text

log = logging.getLogger(__name__)

WGS84 = CRS.from_epsg(4326)


class AOIError(ValueError):
    """The AOI file cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class AOI:
    """The merged AOI polygon in its own CRS, plus its EPSG:4326 twin for searching."""

    geometry: BaseGeometry
    crs: CRS

    @property
    def geometry_4326(self) -> BaseGeometry:
        return reproject_geometry(self.geometry, self.crs, WGS84)

    def in_crs(self, crs: CRS | str) -> BaseGeometry:
        return reproject_geometry(self.geometry, self.crs, CRS.from_user_input(crs))

    def to_json(self) -> str:
        # Deterministic text: an unchanged AOI gives an unchanged checksum, so
        # Snakemake does not rerun jobs after the file is merely rewritten.
        doc = {"crs": self.crs.to_wkt(), "geometry": mapping(self.geometry)}
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> AOI:
        doc = json.loads(text)
        return cls(shape(doc["geometry"]), CRS.from_wkt(doc["crs"]))


def read_aoi(path: str | Path) -> AOI:
    """Read, validate and merge every polygon of a GeoPackage/Shapefile/GeoJSON."""
    path = Path(path)
    if not path.exists():
        raise AOIError(f"aoi: file '{path}' does not exist")
    stat = path.stat()
    return _read_aoi(str(path), str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=8)
def _read_aoi(path: str, resolved: str, mtime_ns: int, size: int) -> AOI:
    # The workflow reads the AOI to validate the config and again for the grid;
    # (path, mtime, size) keys the cache so an edited file is read anew.
    import geopandas  # slow import; only needed here

    path = Path(path)
    try:
        frame = geopandas.read_file(path)
    except Exception as exc:  # noqa: BLE001 (pyogrio raises several types; the text says why)
        raise AOIError(f"aoi: cannot read '{path}' as a vector file: {exc}") from None
    if frame.crs is None:
        raise AOIError(f"aoi: '{path}' has no CRS; assign one (e.g. ogr2ogr -a_srs EPSG:4326)")
    geometry = merge_polygons(frame.geometry.values, path)
    return AOI(geometry, CRS.from_user_input(frame.crs))


def merge_polygons(geometries, path: Path | str) -> BaseGeometry:
    """Union of the polygonal parts, repairing invalid (self-intersecting) rings."""
    geoms = [g for g in geometries if g is not None and not g.is_empty]
    if not geoms:
        raise AOIError(f"aoi: '{path}' holds no geometry")
    repaired = [shapely.make_valid(g) for g in geoms]
    polygonal = [_polygonal_part(g) for g in repaired]
    polygonal = [g for g in polygonal if g is not None and not g.is_empty]
    if not polygonal:
        kinds = sorted({g.geom_type for g in geoms})
        raise AOIError(f"aoi: '{path}' holds no polygon (found {', '.join(kinds)})")
    merged = shapely.union_all(polygonal)
    if merged.area == 0:
        raise AOIError(f"aoi: '{path}' has zero area")
    return merged


def _polygonal_part(geom: BaseGeometry) -> BaseGeometry | None:
    if geom.geom_type in ("Polygon", "MultiPolygon"):
        return geom
    if geom.geom_type == "GeometryCollection":
        parts = [_polygonal_part(g) for g in geom.geoms]
        parts = [p for p in parts if p is not None and not p.is_empty]
        return shapely.union_all(parts) if parts else None
    return None


def reproject_geometry(geom: BaseGeometry, src: CRS, dst: CRS) -> BaseGeometry:
    """Reproject with densified edges, so straight lines in one CRS stay faithful in another."""
    if src == dst:
        return geom
    minx, miny, maxx, maxy = geom.bounds
    span = max(maxx - minx, maxy - miny)
    dense = shapely.segmentize(geom, span / 256) if span > 0 else geom
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(
        dense, lambda xy: np.column_stack(transformer.transform(xy[:, 0], xy[:, 1]))
    )


def write_aoi(aoi: AOI, path: str | Path) -> None:
    atomic_write_text(path, aoi.to_json())


def prepare_aoi(source: str | Path, path: str | Path) -> AOI:
    """The run's AOI: the user's file read, checked and merged, written as JSON."""
    aoi = read_aoi(source)
    write_aoi(aoi, path)
    log.info(
        "AOI %s: %s in %s, bounds %s",
        source,
        aoi.geometry.geom_type,
        aoi.crs.to_string(),
        aoi.geometry.bounds,
    )
    return aoi


def load_aoi(path: str | Path) -> AOI:
    return AOI.from_json(Path(path).read_text())
