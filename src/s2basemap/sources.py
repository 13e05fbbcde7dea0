"""Where scenes come from: one adapter per STAC source, each with its own quirks.

- `earth-search-c1` (the default): Element 84's Collection 1, `sentinel-2-c1-l2a`.
  Reprocessed to baseline 05.00 or later, so every item carries ESA's +1000 DN
  offset and says so in `raster:bands` (scale 0.0001, offset -0.1). Ids name the
  acquisition to the second (`S2B_T38XNF_20250422T091553_L2A`). Recent months are
  complete here; older years are sparse.
- `earth-search-l2a`: Earth Search's older `sentinel-2-l2a`, mixed baselines.
  `earthsearch:boa_offset_applied: true` means Element 84 removed the offset from
  the pixels (`raster:bands` still describes ESA's product); without the flag at
  04.00 or later the pixels decide, as items are mis-flagged both ways. Ids to the
  day (`S2B_15SVU_20251103_0_L2A`), copies `_0`/`_1` of one acquisition, and
  items published before their COGs, whose bands point at the requester-pays JP2
  archive (`s3://sentinel-s2-l2a/...jp2`). It lacks thousands of items a month in
  recent years (earth-search issue #65).
- `planetary-computer`: Microsoft's `sentinel-2-l2a`, asset keys `B02`... `SCL`,
  no harmonisation (from baseline 04.00 the DNs carry +1000), URLs that must be
  signed before reading (see s2basemap.signing).
- `custom`: any STAC API; url, collection and the asset map are the user's.

A source decides the defaults of `stac.url`, `stac.collection` and `stac.assets`,
which a config may still override (a mirror, a test server).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from s2basemap.radiometry import offset_from_metadata

BAND_KEYS = ("blue", "green", "red", "nir", "scl")
EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"


class SourceError(ValueError):
    """The stac settings do not name a usable source; the message names the key."""


@dataclass(frozen=True)
class Source:
    name: str
    url: str | None
    collection: str | None
    assets: dict = field(default_factory=dict)  # band -> asset key
    signed: bool = False  # URLs must be signed before reading
    # the item id's acquisition time (to the second where the id has it) and
    # processing time (Planetary Computer's ids end with it)
    id_pattern: re.Pattern | None = None
    # other collections of the same API, asked when a month comes back empty
    siblings: tuple = ()
    # how its metadata tells the DN offset (s2basemap.radiometry.METADATA_RULES); the
    # pixels then check it at fetch time
    offset_rule: str = "metadata"

    def offset(self, properties: dict, reflectance_asset: dict) -> dict:
        """The item's DN offset as this source's metadata tells it (decided or not)."""
        return offset_from_metadata(self.offset_rule, properties, reflectance_asset)

    def acquisition_key(self, scene: dict) -> tuple:
        """Same tile, same acquisition: datastrip splits and reprocessings are one scene.

        Ids that name the acquisition to the second key on it; otherwise the UTC
        day and relative orbit do (Earth Search l2a ids name the day only)."""
        sensed = self._id_part(scene["id"], "sensed")
        if sensed:
            return scene["tile"], sensed
        return scene["tile"], scene["datetime"][:10], scene.get("relative_orbit")

    def newness(self, scene: dict) -> tuple:
        """Highest processing baseline first, then the newest processing."""
        processed = self._id_part(scene["id"], "processed") or ""
        return (
            scene.get("processing_baseline") or "",
            scene.get("updated") or processed,
            scene["id"],
        )

    def _id_part(self, item_id: str, name: str) -> str | None:
        if self.id_pattern is None:
            return None
        match = self.id_pattern.search(item_id)
        return match.groupdict().get(name) if match else None


EARTH_SEARCH_ASSETS = {band: band for band in BAND_KEYS}
SOURCES = {
    "earth-search-c1": Source(
        "earth-search-c1",
        EARTH_SEARCH,
        "sentinel-2-c1-l2a",
        EARTH_SEARCH_ASSETS,
        id_pattern=re.compile(r"^S2[A-D]_T\d{2}[A-Z]{3}_(?P<sensed>\d{8}T\d{6})_L2A$"),
        siblings=("earth-search-l2a",),
        offset_rule="collection-1",
    ),
    "earth-search-l2a": Source(
        "earth-search-l2a",
        EARTH_SEARCH,
        "sentinel-2-l2a",
        EARTH_SEARCH_ASSETS,
        siblings=("earth-search-c1",),
        offset_rule="earth-search-l2a",
    ),
    "planetary-computer": Source(
        "planetary-computer",
        PLANETARY_COMPUTER,
        "sentinel-2-l2a",
        {"blue": "B02", "green": "B03", "red": "B04", "nir": "B08", "scl": "SCL"},
        signed=True,
        offset_rule="baseline",
        id_pattern=re.compile(
            r"^S2[A-D]_MSIL2A_(?P<sensed>\d{8}T\d{6})_R\d{3}_T\d{2}[A-Z]{3}"
            r"_(?P<processed>\d{8}T\d{6})$"
        ),
    ),
    "custom": Source("custom", None, None),
}
DEFAULT_SOURCE = "earth-search-c1"
# configs from before sources existed named only a url and a collection
LEGACY_COLLECTION = "sentinel-2-l2a"


def resolve_stac(stac: dict) -> dict:
    """The stac settings with the source's defaults filled in and its name set.

    Without `source`, a config that names a url or a collection means what it
    meant before sources existed: that API and collection (`sentinel-2-l2a` when
    unnamed) with Earth Search's asset keys, handled by the adapter of the known
    collection of that name. With neither, the default source.
    """
    stac = dict(stac)
    if "source" in stac:
        name = stac["source"]
        if name not in SOURCES:
            raise SourceError(f"stac.source: unknown source {name!r}; known: {', '.join(SOURCES)}")
        if name == "custom":
            _check_custom(stac)
    elif "url" in stac or "collection" in stac:
        stac.setdefault("url", EARTH_SEARCH)
        stac.setdefault("collection", LEGACY_COLLECTION)
        name = _legacy_source(stac)
        stac["assets"] = EARTH_SEARCH_ASSETS | stac.get("assets", {})
    else:
        name = DEFAULT_SOURCE
    source = SOURCES[name]
    stac["source"] = name
    stac.setdefault("url", source.url)
    stac.setdefault("collection", source.collection)
    stac["assets"] = source.assets | stac.get("assets", {})
    return stac


def _check_custom(stac: dict) -> None:
    for key in ("url", "collection"):
        if not stac.get(key):
            raise SourceError(f"stac.{key}: a custom source needs its {key}")
    missing = [band for band in BAND_KEYS if band not in stac.get("assets", {})]
    if missing:
        raise SourceError(
            f"stac.assets: a custom source needs the asset key of each band "
            f"({', '.join(BAND_KEYS)}); missing: {', '.join(missing)}"
        )


def _legacy_source(stac: dict) -> str:
    """The adapter for a url and collection named without a source."""
    url, collection = stac["url"].rstrip("/"), stac["collection"]
    for name, source in SOURCES.items():
        if source.url == url and source.collection == collection:
            return name
    by_collection = {"sentinel-2-c1-l2a": "earth-search-c1", LEGACY_COLLECTION: "earth-search-l2a"}
    return by_collection.get(collection, "custom")


def source_of(stac: dict) -> Source:
    """The adapter of stac settings (resolved or not)."""
    return SOURCES[stac.get("source") or resolve_stac(stac)["source"]]
