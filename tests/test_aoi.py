"""AOI reading: any vector format and CRS, merged, repaired, clear errors."""

from __future__ import annotations

import geopandas
import numpy as np
import pytest
import shapely
from pyproj import CRS, Transformer
from shapely.geometry import Polygon, box

from s2basemap.aoi import AOI, AOIError, load_aoi, read_aoi, reproject_geometry, write_aoi
from testworld.build import aoi_polygon_4326


def test_geopackage_in_albers_round_trips_to_4326(world):
    aoi = read_aoi(world.aoi_gpkg)
    assert aoi.crs.to_epsg() == 5070
    # the world wrote the hexagon from EPSG:4326 (straight edges there, so slightly
    # bent in Albers); back in EPSG:4326 it must match to a tiny fraction of its area
    hexagon = aoi_polygon_4326()
    assert aoi.geometry_4326.symmetric_difference(hexagon).area < 1e-4 * hexagon.area


def test_multipolygon_geojson_keeps_both_parts(world):
    aoi = read_aoi(world.aoi_multi_geojson)
    assert aoi.geometry.geom_type == "MultiPolygon" and len(aoi.geometry.geoms) == 2


def test_features_are_merged_and_self_intersections_repaired(tmp_path):
    bowtie = Polygon([(0, 0), (1, 1), (1, 0), (0, 1), (0, 0)])  # self-intersecting
    assert not bowtie.is_valid
    frame = geopandas.GeoDataFrame(
        geometry=[bowtie, box(2, 2, 3, 3), box(2.5, 2.5, 3.5, 3.5)], crs=32615
    )
    path = tmp_path / "many.gpkg"
    frame.to_file(path)
    aoi = read_aoi(path)
    assert aoi.geometry.is_valid
    # bowtie: two triangles of 0.25 each; boxes: 1 + 1 - 0.25 overlap
    assert aoi.geometry.area == pytest.approx(0.5 + 1.75)


def test_reprojection_densifies_long_edges():
    edge = box(-96, 30, -84, 40)  # 12 degrees wide: its top edge is a curve in Albers
    albers = reproject_geometry(edge, CRS.from_epsg(4326), CRS.from_epsg(5070))
    # an independent check: the true midpoint of the top edge, projected point-wise
    x, y = Transformer.from_crs(4326, 5070, always_xy=True).transform(-90, 40)
    assert (
        albers.exterior.distance(shapely.Point(x, y)) < 200
    )  # metres; a straight chord misses by km
    naive = Polygon(
        np.column_stack(
            Transformer.from_crs(4326, 5070, always_xy=True).transform(
                *np.array(edge.exterior.coords).T
            )
        )
    )
    assert naive.exterior.distance(shapely.Point(x, y)) > 10_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not a vector file at all", "cannot read"),
        ('{"type": "FeatureCollection", "features": []}', "holds no geometry"),
        (
            (
                '{"type": "FeatureCollection", "features": [{"type": "Feature", "properties": {},'
                ' "geometry": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]}}]}'
            ),
            "holds no polygon",
        ),
    ],
)
def test_unusable_files_get_named_errors(tmp_path, content, message):
    path = tmp_path / "aoi.geojson"
    path.write_text(content)
    with pytest.raises(AOIError, match=message) as excinfo:
        read_aoi(path)
    assert str(path) in str(excinfo.value)


def test_missing_file(tmp_path):
    with pytest.raises(AOIError, match="does not exist"):
        read_aoi(tmp_path / "nope.gpkg")


def test_json_form_is_deterministic_and_lossless(world, tmp_path):
    aoi = read_aoi(world.aoi_gpkg)
    write_aoi(aoi, tmp_path / "a.json")
    write_aoi(read_aoi(world.aoi_gpkg), tmp_path / "b.json")
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    again = load_aoi(tmp_path / "a.json")
    assert isinstance(again, AOI) and again.crs == aoi.crs
    assert again.geometry.equals_exact(aoi.geometry, 0)
