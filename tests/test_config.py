"""Config validation: defaults fill in, every bad value names its key."""

from __future__ import annotations

import copy
import re
from datetime import date

import pytest
from pyproj import Geod

from s2basemap.config import ConfigError, periods, validate_config


@pytest.fixture
def good(world) -> dict:
    return {"aoi": str(world.aoi_gpkg), "months": ["2022-01"]}


STAC_CASES = {
    # a source fills in its url, collection and asset keys; the config may override them
    "planetary": (
        {"source": "planetary-computer"},
        (
            "planetary-computer",
            "https://planetarycomputer.microsoft.com/api/stac/v1",
            "sentinel-2-l2a",
            {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"},
        ),
    ),
    "mirror": (
        {"source": "earth-search-c1", "url": "http://127.0.0.1:9/v1"},
        ("earth-search-c1", "http://127.0.0.1:9/v1", "sentinel-2-c1-l2a", None),
    ),
    # configs from before sources: a url and a collection mean what they meant
    "legacy": (
        {"url": "https://earth-search.aws.element84.com/v1", "collection": "sentinel-2-l2a"},
        ("earth-search-l2a", "https://earth-search.aws.element84.com/v1", "sentinel-2-l2a", None),
    ),
    "legacy url": (
        {"url": "http://127.0.0.1:9/v1"},
        ("earth-search-l2a", "http://127.0.0.1:9/v1", "sentinel-2-l2a", None),
    ),
    "legacy c1": (
        {"collection": "sentinel-2-c1-l2a"},
        ("earth-search-c1", "https://earth-search.aws.element84.com/v1", "sentinel-2-c1-l2a", None),
    ),
    "legacy other": (
        {"url": "https://stac.example/v1", "collection": "s2-l2a", "assets": {"red": "B04"}},
        (
            "custom",
            "https://stac.example/v1",
            "s2-l2a",
            {"blue": "blue", "green": "green", "red": "B04", "nir": "nir", "scl": "scl"},
        ),
    ),
}


@pytest.mark.parametrize("case", STAC_CASES)
def test_a_source_sets_where_scenes_come_from(case):
    from s2basemap.sources import resolve_stac

    stac, (source, url, collection, assets) = STAC_CASES[case]
    resolved = resolve_stac(stac)
    assert (resolved["source"], resolved["url"], resolved["collection"]) == (
        source,
        url,
        collection,
    )
    assert resolved["assets"] == (assets or {b: b for b in ("blue", "green", "red", "nir", "scl")})


def test_a_user_config_naming_only_a_url_drops_the_default_source():
    from s2basemap.config import replace_source

    config = {
        "stac": {"source": "earth-search-c1", "url": "http://127.0.0.1:9/v1", "max_cloud_cover": 80}
    }
    replace_source(config, {"stac": {"url": "http://127.0.0.1:9/v1"}})
    assert config["stac"] == {"url": "http://127.0.0.1:9/v1", "max_cloud_cover": 80}
    kept = {"stac": {"source": "planetary-computer"}}
    replace_source(kept, {"stac": {"source": "planetary-computer", "url": "http://127.0.0.1:9/v1"}})
    assert kept == {"stac": {"source": "planetary-computer"}}


def test_defaults_fill_what_the_user_omits(good):
    config = validate_config(copy.deepcopy(good))
    assert config["stac"]["source"] == "earth-search-c1"
    assert config["stac"]["url"] == "https://earth-search.aws.element84.com/v1"
    assert config["stac"]["collection"] == "sentinel-2-c1-l2a"
    assert config["stac"]["assets"] == {b: b for b in ("blue", "green", "red", "nir", "scl")}
    assert config["composite"]["percentile"] == 25
    assert config["target"] == {"crs": "EPSG:5070", "resolution": 10, "tile_size": 2048}
    assert (
        config["mask"]["mode"] == "ocm+scl" and config["mask"]["ocm"]["inference_resolution"] == 20
    )
    assert config["work_dir"] == "work" and config["results_dir"] == "results"


@pytest.mark.parametrize(
    ("change", "key", "hint"),
    [
        (lambda c: c["target"].update(crs="EPSG:99999"), "target.crs", "is not a CRS"),
        (lambda c: c["target"].update(crs="UTM please"), "target.crs", "is not a CRS"),
        (lambda c: c["target"].update(crs="EPSG:4978"), "target.crs", "2D projected or geographic"),
        (lambda c: c["target"].update(resolution=-10), "target.resolution", "positive number"),
        (lambda c: c["target"].update(resolution=0), "target.resolution", "positive number"),
        (
            lambda c: c["target"].update(crs="EPSG:4326", resolution=10),
            "target.resolution",
            "degree",
        ),
        (lambda c: c["target"].update(resolution=0.01), "target.resolution", "1 m to 10 km"),
        (lambda c: c["target"].update(tile_size=100), "target.tile_size", "256-16384"),
        (lambda c: c["composite"].update(percentile=150), "composite.percentile", "0-100"),
        (lambda c: c["composite"].update(percentile="p25"), "composite.percentile", "0-100"),
        (lambda c: c.update(aoi="missing/aoi.gpkg"), "aoi", "does not exist"),
        (lambda c: c.update(months=["2025-13"]), "months[0]", "01-12"),
        (lambda c: c.update(months=["2025-6"]), "months[0]", "YYYY-MM"),
        (lambda c: c.update(months=[]), "months", "no period configured"),
        (lambda c: c.update(months=["2022-01", "2022-01"]), "months", "non-unique"),
        (
            lambda c: c.update(date_ranges=[{"start": "2022-02-30", "end": "2022-03-02"}]),
            "date_ranges[0].start",
            "not a calendar date",
        ),
        (
            lambda c: c.update(date_ranges=[{"start": "2022-03-10", "end": "2022-03-02"}]),
            "date_ranges[0]",
            "before start",
        ),
        (
            lambda c: c.update(date_ranges=[{"start": "2022-01-20", "end": "2022-02-05"}]),
            "date_ranges",
            "overlap",
        ),
        (lambda c: c.update(colour="blue"), "colour", "unknown key"),
        (lambda c: c["stac"].update(collection=""), "stac.collection", "STAC collection"),
        (
            lambda c: c["stac"].update(source="earth-search"),
            "stac.source",
            "earth-search-c1 (the default)",
        ),
        (
            lambda c: c["stac"].update(
                source="custom", url="https://stac.example/v1", collection="s2", assets={}
            ),
            "stac.assets",
            "needs the asset key of each band (blue, green, red, nir, scl); missing: blue",
        ),
        (
            lambda c: c.update(
                stac={
                    "source": "custom",
                    "collection": "s2",
                    "assets": dict.fromkeys(["blue", "green", "red", "nir", "scl"], "x"),
                }
            ),
            "stac.url",
            "a custom source needs its url",
        ),
        (lambda c: c["stac"].update(url="ftp://x"), "stac.url", "http or https"),
        (lambda c: c["stac"].update(max_cloud_cover=120), "stac.max_cloud_cover", "0-100"),
        (lambda c: c["output"].update(filename_base="a/b"), "output.filename_base", "letters"),
        (lambda c: c["fetch"].update(retries=-1), "fetch.retries", "0-20"),
        (
            lambda c: c["fetch"].update(max_left_out_fraction=1.5),
            "fetch.max_left_out_fraction",
            "(0-1)",
        ),
        (
            lambda c: c["fetch"].update(outage_after=0),
            "fetch.outage_after",
            "less than the minimum",
        ),
        (
            lambda c: c["storage"].update(months_in_flight=0),
            "storage.months_in_flight",
            "less than the minimum",
        ),
        (lambda c: c["composite"].update(method="mean"), "composite.method", "medoid"),
        (lambda c: c["composite"].update(pick_index="ndwi"), "composite.pick_index", "brightness"),
        (
            lambda c: c.update(
                date_ranges=[{"start": "2022-03-01", "end": "2022-11-11"}],
                composite={"method": "pick"},
            ),
            "composite.method",
            "has 256 days",
        ),
        (
            lambda c: c.update(
                date_ranges=[{"start": "2022-03-01", "end": "2023-03-01"}],
                overrides={"2022-03-01_2023-03-01": {"composite": {"method": "medoid"}}},
            ),
            "overrides.2022-03-01_2023-03-01.composite.method",
            "medoid records each pixel's acquisition day as 0-254",
        ),
        (lambda c: c.pop("aoi"), "aoi", "required"),
    ],
)
def test_bad_values_name_their_key(good, change, key, hint):
    config = validate_config(copy.deepcopy(good))  # defaults in place, then break one value
    change(config)
    with pytest.raises(ConfigError) as excinfo:
        validate_config(config)
    assert excinfo.value.key == key
    assert f"config key '{key}'" in str(excinfo.value)
    assert hint in str(excinfo.value)


def test_aoi_without_crs_is_named(good, tmp_path):
    # GeoJSON always means CRS84, so use a shapefile written without a .prj
    import geopandas
    from shapely.geometry import box

    shp = tmp_path / "nocrs.shp"
    geopandas.GeoDataFrame(geometry=[box(0, 0, 1, 1)]).to_file(shp)
    with pytest.raises(ConfigError, match="has no CRS"):
        validate_config(good | {"aoi": str(shp)})


def test_periods_are_months_and_ranges_sorted():
    config = {
        "months": ["2022-02", "2021-12"],
        "date_ranges": [{"start": "2022-01-03", "end": "2022-01-20"}],
    }
    result = periods(config)
    assert [p.label for p in result] == ["2021-12", "2022-01-03_2022-01-20", "2022-02"]
    assert result[2].start == date(2022, 2, 1) and result[2].end == date(2022, 2, 28)
    assert result[0].filename_dates == "2021_12_01_to_2021_12_31"


US_SURVEY_FOOT = 1200 / 3937  # metres, by definition


@pytest.mark.parametrize(
    ("crs", "res", "rejected", "unit", "metres"),
    [
        # 0.0001 deg is 11 m; 0.1 deg is 11.1 km at the equator, over 10 km
        ("EPSG:4326", 0.0001, 0.1, "degree", None),
        ("EPSG:5070", 10, 0.5, "metre", 0.5),
        ("EPSG:5070", 1, 0.999, "metre", 0.999),  # the bounds are allowed, not beyond
        ("EPSG:5070", 10_000, 10_001, "metre", 10_001),
        ("EPSG:32615", [10, 20], [10, 20_000], "metre", 20_000),
        ("EPSG:3857", 30, 0.5, "metre", 0.5),
        # NAD83 / Texas Central in US survey feet: 30 ft is 9.1 m, 3 ft 0.91 m
        ("EPSG:2277", 30, 3, "US survey foot", 3 * US_SURVEY_FOOT),
    ],
)
def test_sensible_resolutions_pass_and_their_neighbours_do_not(
    good, crs, res, rejected, unit, metres
):
    config = validate_config(good | {"target": {"crs": crs, "resolution": res}})
    assert config["target"] == {"crs": crs, "resolution": res, "tile_size": 2048}
    with pytest.raises(ConfigError) as excinfo:
        validate_config(good | {"target": {"crs": crs, "resolution": rejected}})
    assert excinfo.value.key == "target.resolution"
    said = re.search(r"': (\S+) (.+) is about (\S+) m on the ground in (\S+);", str(excinfo.value))
    assert said, str(excinfo.value)
    size = rejected[-1] if isinstance(rejected, list) else rejected
    if metres is None:  # a degree of longitude along the equator
        metres = Geod(ellps="WGS84").inv(0, 0, size, 0)[2]
    assert (float(said[1]), said[2], said[4]) == (size, unit, crs)
    assert float(said[3]) == pytest.approx(metres, rel=1e-3)
    assert str(excinfo.value).endswith("(1 m to 10 km)")


def test_unquoted_yaml_dates_are_taken_as_the_dates_they_were(good):
    import yaml

    good.pop("months")
    good |= yaml.safe_load("date_ranges: [{start: 2025-11-03, end: 2025-11-20}]")
    assert isinstance(good["date_ranges"][0]["start"], date)  # what YAML makes of them
    config = validate_config(good)
    assert config["date_ranges"] == [{"start": "2025-11-03", "end": "2025-11-20"}]
    assert [p.label for p in periods(config)] == ["2025-11-03_2025-11-20"]


def documented_keys() -> dict[str, str]:
    """config/README.md's key table: dotted key -> the default column's text."""
    import re

    from conftest import REPO

    rows = re.findall(
        r"^\| `([^`]+)` \| ([^|]*) \|", (REPO / "config" / "README.md").read_text(), re.MULTILINE
    )
    return {key: default.strip() for key, default in rows}


def schema_keys(schema: dict, prefix: str, documented: dict) -> dict:
    """Dotted key -> schema of each configurable key; an object is one key where the table
    documents it as one (stac.assets), else its properties are."""
    keys = {}
    for name, sub in schema.get("properties", {}).items():
        key = f"{prefix}{name}"
        if "properties" in sub and key not in documented:
            keys |= schema_keys(sub, f"{key}.", documented)
        else:
            keys[key] = sub
    return keys


def test_the_config_readme_documents_every_schema_key_with_its_default():
    import yaml

    from s2basemap.config import SCHEMA_PATH

    documented = documented_keys()
    keys = schema_keys(yaml.safe_load(SCHEMA_PATH.read_text()), "", documented)
    assert set(documented) == set(keys)
    for key, text in documented.items():
        if not text.startswith("`") or "default" not in keys[key]:
            continue  # "(required)", "the source's": said in words
        shown, default = yaml.safe_load(text.strip("`")), keys[key]["default"]
        assert shown == default or text.strip("`") == str(default), (key, text, default)


def test_a_period_of_255_days_fits_the_date_band_and_one_of_256_does_not(good):
    from s2basemap.config import method_settings

    # 31 + 30 + 31 + 30 + 31 + 31 + 30 + 31 days to October's end, then 10 of November: 255
    # days, the last of them day 254, the date band's last value below its nodata (255)
    config = validate_config(
        good
        | {
            "months": [],
            "date_ranges": [{"start": "2022-03-01", "end": "2022-11-10"}],
            "composite": {"method": "medoid"},
        }
    )
    (period,) = periods(config)
    assert (period.label, period.days) == ("2022-03-01_2022-11-10", 255)
    assert period.day_of("2022-11-10T23:59:59Z") == 254
    assert method_settings(config, period.label) == {"name": "medoid"}
    longer = copy.deepcopy(config)
    longer["date_ranges"] = [{"start": "2022-03-01", "end": "2022-11-11"}]
    with pytest.raises(ConfigError) as excinfo:
        validate_config(copy.deepcopy(longer))
    assert excinfo.value.key == "composite.method"
    assert str(excinfo.value).endswith(
        "medoid records each pixel's acquisition day as 0-254, but period "
        "2022-03-01_2022-11-11 has 256 days; use shorter date ranges"
    )
    # the percentile records no day: any length fits
    longer["composite"]["method"] = "percentile"
    assert [p.days for p in periods(validate_config(longer))] == [256]


def test_a_jobs_method_holds_only_the_settings_it_uses(good):
    from s2basemap.config import method_settings

    config = validate_config(
        good
        | {
            "months": ["2022-01", "2022-02", "2022-03"],
            "composite": {"percentile": 40, "pick_index": "nir"},
            "overrides": {
                "2022-02": {"composite": {"method": "pick"}},
                "2022-03": {"composite": {"method": "medoid"}},
            },
        }
    )
    assert method_settings(config, "2022-01") == {"name": "percentile", "percentile": 40}
    assert method_settings(config, "2022-02") == {
        "name": "pick",
        "percentile": 40,
        "pick_index": "nir",
    }
    assert method_settings(config, "2022-03") == {"name": "medoid"}
