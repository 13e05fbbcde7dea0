"""The series as STAC: each month's Item and the Collection of the published months,
validated offline against the STAC 1.1 core and extension schemas."""

from __future__ import annotations

import json

import jsonschema
import pytest
from shapely.geometry import box
from stacschemas import validate

from s2basemap.catalog import month_item, series_collection, write_collection

BOUNDS = (500000.0, 3800000.0, 520480.0, 3810240.0)  # 2048 x 1024 px of 10 m, EPSG:32615


def metadata_of(label: str, start: str, end: str, scenes: int = 2, percentile: int = 25) -> dict:
    """A month's metadata.json as `outputs.build_metadata` writes it (the fields Items use)."""
    return {
        "product": None if not scenes else f"S2_RGBNIR_{label.replace('-', '_')}",
        "status": "ok" if scenes else "no_scenes",
        "period": {"label": label, "start": start, "end": end},
        "crs": {"name": "WGS 84 / UTM zone 15N", "epsg": 32615, "wkt": "..."},
        "resolution": [10.0, 10.0],
        "resolution_unit": "metre",
        "bounds": list(BOUNDS),
        "size": {"width": 2048, "height": 1024},
        "bands": ["Red", "Green", "Blue", "NIR"],
        "reflectance_scale": 0.0001,
        "percentile": percentile,
        "composite": {
            "method": "percentile",
            "resampling": "nearest",
            "tile_size": 1024,
            "description": f"{percentile}th percentile of each band",
        },
        "mask": {"mode": "ocm+scl"},
        "source": {"url": "https://stac.example/v1/", "collection": "sentinel-2-c1-l2a"},
        "scenes": [{"id": f"S2B_15SYU_2022011{i}_0_L2A"} for i in range(scenes)],
        "attribution": "Contains modified Copernicus Sentinel data 2022",
        "software": {"s2basemap": "0.1.0", "gdal": "3.9.0"},
    }


FILES = {
    "metadata": "metadata.json",
    "stac_item": "item.json",
    "mosaic": "m.tif",
    "counts": "m_count.tif",
    "quicklook": "m_quicklook.png",
}
OUTLINE = box(-92.4, 34.3, -92.2, 34.4)


def files_of(metadata: dict) -> dict:
    """The files `outputs.describe_period` names: no products for a month without scenes."""
    return FILES if metadata["scenes"] else {k: FILES[k] for k in ("metadata", "stac_item")}


def january_item() -> dict:
    metadata = metadata_of("2022-01", "2022-01-01", "2022-01-31")
    return month_item(metadata, OUTLINE, FILES, "S2", "../collection.json")


def test_an_item_carries_the_grid_bands_lineage_and_sources():
    item = january_item()
    validate(item)
    props = item["properties"]
    assert item["stac_version"] == "1.1.0" and item["collection"] == "S2"
    assert props["proj:code"] == "EPSG:32615" and props["proj:shape"] == [1024, 2048]
    left, top = BOUNDS[0], BOUNDS[3]
    assert props["proj:transform"] == [10.0, 0.0, left, 0.0, -10.0, top]
    assert props["proj:bbox"] == list(BOUNDS)
    assert (props["start_datetime"], props["end_datetime"]) == (
        "2022-01-01T00:00:00Z",
        "2022-01-31T23:59:59Z",
    )
    assert props["datetime"] is None and props["created"].endswith("Z")
    assert props["gsd"] == 10.0
    assert "25th percentile" in props["processing:lineage"]
    assert props["processing:software"]["s2basemap"] == "0.1.0"
    bands = item["assets"]["mosaic"]["bands"]
    assert [b["eo:common_name"] for b in bands] == ["red", "green", "blue", "nir"]
    assert {(b["nodata"], b["data_type"], b["raster:scale"]) for b in bands} == {
        (0, "uint16", 0.0001)
    }
    assert item["assets"]["mosaic"]["href"] == "./m.tif"
    sources = [link["href"] for link in item["links"] if link["rel"] == "derived_from"]
    assert sources == [
        f"https://stac.example/v1/collections/sentinel-2-c1-l2a/items/S2B_15SYU_2022011{i}_0_L2A"
        for i in range(2)
    ]
    assert {link["rel"]: link["href"] for link in item["links"]}["collection"] == (
        "../collection.json"
    )


def test_a_month_without_scenes_has_an_item_with_metadata_only():
    metadata = metadata_of("2022-03", "2022-03-01", "2022-03-31", 0)
    item = month_item(metadata, OUTLINE, files_of(metadata), "S2", "../collection.json")
    validate(item)
    assert item["id"] == "no-scenes-2022-03" and set(item["assets"]) == {"metadata"}


def write_items(tmp_path, months: dict) -> list:
    paths = []
    for label, (start, end, scenes) in months.items():
        path = tmp_path / "results" / label / "item.json"
        path.parent.mkdir(parents=True)
        metadata = metadata_of(label, start, end, scenes)
        item = month_item(metadata, OUTLINE, files_of(metadata), "S2", "../collection.json")
        path.write_text(json.dumps(item))
        paths.append(path)
    return paths


def test_the_collection_links_and_spans_the_published_months_only(tmp_path):
    paths = write_items(
        tmp_path,
        {
            "2022-01": ("2022-01-01", "2022-01-31", 2),
            "2022-02": ("2022-02-01", "2022-02-28", 0),  # no scenes: nothing to show
            "2022-03": ("2022-03-01", "2022-03-31", 3),
        },
    )
    collection = write_collection(paths, tmp_path / "results" / "collection.json", "S2")
    validate(collection)
    assert json.loads((tmp_path / "results" / "collection.json").read_text()) == collection
    items = [link["href"] for link in collection["links"] if link["rel"] == "item"]
    assert items == ["./2022-01/item.json", "./2022-03/item.json"]
    assert collection["extent"]["temporal"]["interval"] == [
        ["2022-01-01T00:00:00Z", "2022-03-31T23:59:59Z"]
    ]
    assert collection["extent"]["spatial"]["bbox"] == [list(OUTLINE.bounds)]
    created = [json.loads(p.read_text())["properties"]["created"] for p in paths]
    assert collection["updated"] == max(created)


def test_pystac_reads_the_series_from_its_relative_links(tmp_path):
    import pystac

    paths = write_items(
        tmp_path,
        {
            "2022-01": ("2022-01-01", "2022-01-31", 2),
            "2022-02": ("2022-02-01", "2022-02-28", 1),
        },
    )
    write_collection(paths, tmp_path / "results" / "collection.json", "S2")
    collection = pystac.Collection.from_file(str(tmp_path / "results" / "collection.json"))
    items = sorted(collection.get_items(), key=lambda item: item.id)
    assert [item.id for item in items] == ["S2_RGBNIR_2022_01", "S2_RGBNIR_2022_02"]
    assert items[0].assets["mosaic"].get_absolute_href() == str(
        tmp_path / "results" / "2022-01" / "m.tif"
    )
    assert items[0].get_collection().id == "S2"


def test_a_collection_of_months_none_published_spans_them_without_links(tmp_path):
    paths = write_items(tmp_path, {"2022-02": ("2022-02-01", "2022-02-28", 0)})
    collection = series_collection(paths, tmp_path / "results" / "collection.json", "S2")
    validate(collection)
    assert not [link for link in collection["links"] if link["rel"] == "item"]


@pytest.mark.parametrize(
    ("field", "value"), [("proj:shape", [1024]), ("proj:code", 32615), ("gsd", -10)]
)
def test_the_offline_validation_rejects_a_broken_item(field, value):
    item = january_item()
    item["properties"][field] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(item)
