"""Configuration: JSON-schema validation with defaults, then the checks a schema cannot do.

Every failure is a ConfigError whose message names the key and what is allowed,
so a bad value stops the run before any job with one readable line.
"""

from __future__ import annotations

import itertools
from datetime import date
from pathlib import Path

import jsonschema
from pyproj import CRS
from pyproj.exceptions import CRSError

from s2basemap.aoi import AOIError, read_aoi
from s2basemap.periods import DAY_NODATA, Period
from s2basemap.sources import SourceError, resolve_stac

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

# Pixel sizes outside this ground range are typos (10 degrees) or pointless (1 cm).
MIN_PIXEL_METRES = 1.0
MAX_PIXEL_METRES = 10_000.0
METRES_PER_DEGREE = 111_320.0


class ConfigError(ValueError):
    """A configuration value is not allowed; `key` is its dotted path."""

    def __init__(self, key: str, message: str):
        self.key = key
        super().__init__(f"config key '{key}': {message}")


def validate_config(config: dict, schema_path: str | Path = SCHEMA_PATH) -> dict:
    """Fill defaults and validate in place; return the config or raise ConfigError."""
    from snakemake.exceptions import WorkflowError
    from snakemake.utils import validate

    _dates_as_text(config)
    try:
        validate(config, str(schema_path), set_default=True)
    except WorkflowError as exc:
        # snakemake flattens the jsonschema error into text; the original is the context
        error = exc.__context__
        if not isinstance(error, jsonschema.ValidationError):
            raise
        raise schema_error(error) from None
    try:
        config["stac"] = resolve_stac(config["stac"])
    except SourceError as exc:
        key, _, message = str(exc).partition(": ")
        raise ConfigError(key, message) from None
    check_semantics(config)
    return config


def _dates_as_text(config: dict) -> None:
    """YAML reads an unquoted 2025-11-03 as a date: take it as the YYYY-MM-DD it was."""
    for item in config.get("date_ranges") or []:
        if isinstance(item, dict):
            for key in ("start", "end"):
                if isinstance(item.get(key), date):
                    item[key] = item[key].isoformat()


def schema_error(error: jsonschema.ValidationError) -> ConfigError:
    """Turn jsonschema's error into one line naming the key and what is allowed."""
    key = dotted(error.absolute_path)
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        known = ", ".join(sorted(error.schema.get("properties", {})))
        name = f"{key}.{unknown[0]}" if key else unknown[0]
        return ConfigError(name, f"unknown key; allowed keys here: {known}")
    if error.validator == "required":
        missing = error.message.split("'")[1]
        name = f"{key}.{missing}" if key else missing
        return ConfigError(name, "is required but missing")
    allowed = (error.schema.get("description") or _describe(error.schema)).strip()
    return ConfigError(key or "(top level)", f"{error.message}; allowed: {allowed}")


def dotted(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(schema: dict) -> str:
    parts = [f"{k}={schema[k]}" for k in ("type", "minimum", "maximum", "pattern") if k in schema]
    return ", ".join(parts) or "see workflow/schemas/config.schema.yaml"


PERIOD_KEYS = ("months", "date_ranges")


def replace_periods(config: dict, user_config: dict) -> None:
    """Where the user's config names months or date ranges, those are all the
    periods: the other key's defaults are dropped."""
    if any(key in user_config for key in PERIOD_KEYS):
        for key in PERIOD_KEYS:
            if key not in user_config:
                config.pop(key, None)


def replace_source(config: dict, user_config: dict) -> None:
    """Where the user's config names a STAC url or collection but no source, it means
    what it did before sources existed: the default config's source is dropped."""
    user_stac = user_config.get("stac") or {}
    if "source" not in user_stac and ("url" in user_stac or "collection" in user_stac):
        (config.get("stac") or {}).pop("source", None)


def check_semantics(config: dict) -> None:
    periods(config)
    target_crs(config)
    check_resolution(config)
    check_overrides(config)
    check_methods(config)
    if config["upload"]["enabled"] and not config["upload"]["bucket"]:
        raise ConfigError("upload.bucket", "is required when upload.enabled is true")
    if not config["upload"]["keep_local"] and not config["upload"]["enabled"]:
        raise ConfigError(
            "upload.keep_local",
            "false needs upload.enabled: true (the products "
            "would be deleted without being uploaded)",
        )
    ocm = config["mask"]["ocm"]
    if ocm["patch_overlap"] >= ocm["patch_size"]:
        raise ConfigError(
            "mask.ocm.patch_overlap",
            f"{ocm['patch_overlap']} is not less than patch_size {ocm['patch_size']}",
        )
    try:
        aoi = read_aoi(config["aoi"])
    except AOIError as exc:
        raise ConfigError("aoi", str(exc).removeprefix("aoi: ")) from None
    if crosses_antimeridian(aoi.geometry_4326) and target_crs(config).is_geographic:
        raise ConfigError(
            "target.crs",
            f"{config['target']['crs']} is geographic but the AOI crosses the antimeridian, "
            "where its longitudes wrap; allowed: a projected CRS covering the AOI "
            "(e.g. EPSG:3832, or the UTM zone of the AOI)",
        )


def crosses_antimeridian(geometry_4326) -> bool:
    """Parts on both sides of +-180 degrees (an AOI split at the antimeridian)."""
    minx, _, maxx, _ = geometry_4326.bounds
    return minx < -179 and maxx > 179


def check_overrides(config: dict) -> None:
    labels = {p.label for p in periods(config)}
    for label in config.get("overrides", {}):
        if label not in labels:
            raise ConfigError(
                f"overrides.{label}",
                f"is not a configured period; configured: {', '.join(sorted(labels))}",
            )


def check_methods(config: dict) -> None:
    """pick and medoid record each pixel's day in a byte: their periods fit in 255 days."""
    for period in periods(config):
        method = composite_settings(config, period.label)["method"]
        if method != "percentile" and period.days > DAY_NODATA:
            key = (
                f"overrides.{period.label}.composite.method"
                if "method"
                in config.get("overrides", {}).get(period.label, {}).get("composite", {})
                else "composite.method"
            )
            raise ConfigError(
                key,
                f"{method} records each pixel's acquisition day as 0-{DAY_NODATA - 1}, but "
                f"period {period.label} has {period.days} days; use shorter date ranges",
            )


def method_settings(config: dict, period_label: str) -> dict:
    """The period's composite method with only the settings it uses: changing another
    method's settings reruns nothing. The keys of `s2basemap.composite.Method`."""
    settings = composite_settings(config, period_label)
    method = {"name": settings["method"]}
    if settings["method"] != "medoid":
        method["percentile"] = settings["percentile"]
    if settings["method"] == "pick":
        method["pick_index"] = settings["pick_index"]
    return method


def composite_settings(config: dict, period_label: str) -> dict:
    """The composite section with the period's overrides applied."""
    override = config.get("overrides", {}).get(period_label, {}).get("composite", {})
    return {**config["composite"], **override}


def periods(config: dict) -> list[Period]:
    """The configured periods, sorted, checked for real dates and no overlap."""
    result = [Period.month(m) for m in config.get("months", [])]
    for i, item in enumerate(config.get("date_ranges", [])):
        start = _parse_date(item["start"], f"date_ranges[{i}].start")
        end = _parse_date(item["end"], f"date_ranges[{i}].end")
        if end < start:
            raise ConfigError(f"date_ranges[{i}]", f"end {end} is before start {start}")
        result.append(Period.date_range(start, end))
    if not result:
        raise ConfigError("months", "no period configured; give months (YYYY-MM) or date_ranges")
    result.sort()
    for a, b in itertools.pairwise(result):
        if a.overlaps(b):
            raise ConfigError(
                "date_ranges",
                f"periods {a.label} and {b.label} overlap; a scene must belong to one period",
            )
    return result


def _parse_date(text: str, key: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(key, f"'{text}' is not a calendar date; allowed: YYYY-MM-DD") from None


def target_crs(config: dict) -> CRS:
    text = config["target"]["crs"]
    try:
        crs = CRS.from_user_input(text)
    except CRSError:
        raise ConfigError(
            "target.crs", f"'{text}' is not a CRS; allowed: e.g. EPSG:5070, EPSG:4326, EPSG:32615"
        ) from None
    if not (crs.is_projected or crs.is_geographic) or len(crs.axis_info) < 2:
        raise ConfigError("target.crs", f"'{text}' is not a 2D projected or geographic CRS")
    return crs


def lookup(config: dict, keys) -> object:
    """The value at a path of keys, e.g. ("fetch", "max_left_out_fraction")."""
    value = config
    for key in keys:
        value = value[key]
    return value


def resolution(config: dict) -> tuple[float, float]:
    value = config["target"]["resolution"]
    return (
        (float(value), float(value))
        if isinstance(value, (int, float))
        else tuple(map(float, value))
    )


def check_resolution(config: dict) -> None:
    """Reject pixel sizes that make no sense in the target CRS's own units."""
    crs = target_crs(config)
    unit = crs.axis_info[0].unit_name
    factor = METRES_PER_DEGREE if crs.is_geographic else crs.axis_info[0].unit_conversion_factor
    for size in resolution(config):
        metres = size * factor
        if not MIN_PIXEL_METRES <= metres <= MAX_PIXEL_METRES:
            low, high = MIN_PIXEL_METRES / factor, MAX_PIXEL_METRES / factor
            raise ConfigError(
                "target.resolution",
                f"{size} {unit} is about {metres:g} m on the ground in {config['target']['crs']}; "
                f"allowed: {low:.3g} to {high:.3g} {unit} ({MIN_PIXEL_METRES:g} m to "
                f"{MAX_PIXEL_METRES / 1000:g} km)",
            )
