"""Radiometric harmonisation of Sentinel-2 L2A digital numbers.

From processing baseline 04.00 (2022-01-25) ESA adds BOA_ADD_OFFSET (+1000 DN)
to every reflectance DN: reflectance = (DN - 1000) / 10000. Older products have
reflectance = DN / 10000. Harmonised output always follows the old convention,
so scenes of both eras composite together.

Each provider publishes its pixels its own way, so the metadata is read by the
provider's rule (`METADATA_RULES`):

- Earth Search Collection 1 (`collection-1`): reprocessed at 05.00 or later; the
  pixels carry the offset and `raster:bands` says so.
- Earth Search `sentinel-2-l2a` (`earth-search-l2a`): `earthsearch:boa_offset_applied:
  true` means Element 84 removed the offset from the pixels; such items still carry
  `raster:bands` `offset: -0.1`, which describes ESA's product, not these pixels.
  Flag false (or absent) at 04.00 or later decides nothing: items are mis-flagged
  both ways (earth-search #9, #66, #71; cirrus-earth-search #33).
- Planetary Computer (`baseline`): ESA's product as it is, so ESA's baseline rule.

Then a decimated sample of the item's own pixels gives a verdict of its own
(`pixel_verdict`): it settles what the metadata leaves undecided and overrules
metadata it contradicts. A sample that cannot tell (too few clear pixels, a
uniformly bright desert) leaves the provider's rule in force, recorded as
undecided. The decision, its evidence and its source are all recorded.
"""

from __future__ import annotations

import re

import numpy as np

OFFSET_BASELINE = (4, 0)
ESA_BOA_ADD_OFFSET = -1000
MIN_SAMPLE_PIXELS = 500
# SCL classes whose pixels are surface seen clearly: dark area, vegetation, not
# vegetated, water, unclassified (no data, defective, shadow, clouds, cirrus and
# snow tell nothing about the offset).
CLEAR_SCL = (2, 4, 5, 6, 7)
# Clear classes whose visible reflectance is low everywhere, deserts included: dark
# area, vegetation, water (facts.md, "Bright land"). Without the offset their
# visible DNs sit far below 1000; with it, at or above.
DARK_SCL = (2, 4, 6)
# 1000 DN less a reflectance of 0.01. With the offset, a visible band below this is
# reflectance under -0.01, which atmospheric correction leaves on very few pixels.
FLOOR_DN = 900


def parse_baseline(text) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    return (int(match[1]), int(match[2])) if match else None


def _metadata(dn: int, decided: bool, rule: str, reason: str) -> dict:
    """A metadata decision: `dn` is added to every non-zero DN (so -1000 removes ESA's
    offset, 0 leaves pixels alone); undecided ones hold the provider's fallback."""
    return {"dn": dn, "decided": decided, "rule": rule, "reason": reason}


def _evidence(properties: dict, reflectance_asset: dict) -> tuple:
    baseline_text = properties.get("s2:processing_baseline")
    flag = properties.get("earthsearch:boa_offset_applied")
    bands = reflectance_asset.get("raster:bands") or [{}]
    scale, offset = bands[0].get("scale"), bands[0].get("offset")
    text = f"baseline {baseline_text}, boa_offset_applied={flag}, raster:bands offset={offset}"
    raster_dn = round(offset / scale) if offset and scale else None
    return parse_baseline(baseline_text), flag, raster_dn, text


def _baseline_rule(baseline, rule: str, evidence: str) -> dict:
    """ESA's rule: from baseline 04.00 the DNs carry +1000."""
    if baseline is None:
        return _metadata(0, False, rule, f"{evidence}: no baseline, so no offset is assumed")
    if baseline < OFFSET_BASELINE:
        return _metadata(0, True, rule, f"{evidence}: before 04.00, no offset")
    return _metadata(
        ESA_BOA_ADD_OFFSET, True, rule, f"{evidence}: ESA's BOA_ADD_OFFSET from 04.00 on"
    )


def collection_1_rule(properties: dict, reflectance_asset: dict) -> dict:
    """Collection 1: the pixels carry what `raster:bands` says (ESA's rule without it)."""
    baseline, _, raster_dn, evidence = _evidence(properties, reflectance_asset)
    if raster_dn is not None:
        return _metadata(
            raster_dn, True, "collection-1", f"{evidence}: offset/scale of raster:bands"
        )
    return _baseline_rule(baseline, "collection-1", evidence)


def earth_search_l2a_rule(properties: dict, reflectance_asset: dict) -> dict:
    """Earth Search l2a: the flag when true; at 04.00 or later without it, undecided."""
    baseline, flag, _, evidence = _evidence(properties, reflectance_asset)
    if baseline is not None and baseline < OFFSET_BASELINE:
        return _metadata(0, True, "earth-search-l2a", f"{evidence}: before 04.00, no offset")
    if flag is True:
        return _metadata(
            0,
            True,
            "earth-search-l2a",
            f"{evidence}: Element 84 removed the offset (raster:bands describes ESA's product)",
        )
    if baseline is None:
        return _metadata(0, False, "earth-search-l2a", f"{evidence}: no baseline and no flag")
    return _metadata(
        ESA_BOA_ADD_OFFSET,
        False,
        "earth-search-l2a",
        f"{evidence}: not flagged at 04.00 or later, which items are mis-flagged both ways "
        "on; ESA's offset unless the pixels tell",
    )


def baseline_rule(properties: dict, reflectance_asset: dict) -> dict:
    """ESA's rule alone, for sources that publish their pixels as ESA made them and no
    offset metadata (Planetary Computer)."""
    baseline, _, _, _ = _evidence(properties, reflectance_asset)
    evidence = f"baseline {properties.get('s2:processing_baseline')}"
    return _baseline_rule(baseline, "baseline", evidence)


def generic_rule(properties: dict, reflectance_asset: dict) -> dict:
    """Any other STAC API: Earth Search's flag where it is set, then `raster:bands`,
    then ESA's rule."""
    baseline, flag, raster_dn, evidence = _evidence(properties, reflectance_asset)
    if baseline is not None and baseline < OFFSET_BASELINE:
        return _metadata(0, True, "metadata", f"{evidence}: before 04.00, no offset")
    if flag is True:
        return _metadata(0, True, "metadata", f"{evidence}: flagged as removed")
    if raster_dn is not None:
        return _metadata(raster_dn, True, "metadata", f"{evidence}: offset/scale of raster:bands")
    return _baseline_rule(baseline, "metadata", evidence)


METADATA_RULES = {
    "collection-1": collection_1_rule,
    "earth-search-l2a": earth_search_l2a_rule,
    "baseline": baseline_rule,
    "metadata": generic_rule,
}


def offset_from_metadata(rule: str, properties: dict, reflectance_asset: dict) -> dict:
    """The item's offset as its provider's metadata tells it (`METADATA_RULES`)."""
    return METADATA_RULES[rule](properties, reflectance_asset)


def pixel_verdict(bands: np.ndarray, scl: np.ndarray, threshold: float) -> dict:
    """Whether a sample's pixels carry the offset: "offset", "no offset" or "undecided".

    `bands` holds blue, green and red DNs (3, ...), `scl` the classes on the same
    grid. The statistic is the share of clear pixels whose darkest visible band is
    below FLOOR_DN, which with the offset would be negative reflectance. Over the
    dark classes (water, vegetation, dark area: low visible reflectance on any land)
    more than `threshold` below it is no offset and at most that is the offset.
    Without enough dark pixels only "no offset" can be told, by the same share over
    every clear pixel: a bright desert sits above 1000 DN either way.
    """
    visible = np.minimum.reduce(bands.reshape(3, -1))
    scl = scl.ravel()
    clear = (visible > 0) & np.isin(scl, CLEAR_SCL)
    dark = clear & np.isin(scl, DARK_SCL)
    low = visible < FLOOR_DN
    n_clear, n_dark = int(clear.sum()), int(dark.sum())
    counts = {"clear_pixels": n_clear, "dark_pixels": n_dark}
    if n_clear < MIN_SAMPLE_PIXELS:
        return {"verdict": "undecided", "evidence": f"only {n_clear} clear pixels"} | counts
    if n_dark >= MIN_SAMPLE_PIXELS:
        sample, otherwise = dark, "offset"
        what = f"{n_dark} clear dark pixels (water, vegetation, dark area)"
    else:
        sample, otherwise = clear, "undecided"
        what = f"{n_clear} clear pixels (only {n_dark} dark: water, vegetation, dark area)"
    share = float(low[sample].mean())
    evidence = f"{share:.1%} of {what} have a visible band below {FLOOR_DN} DN"
    verdict = "no offset" if share > threshold else otherwise
    return {"verdict": verdict, "evidence": evidence, "below_share": share} | counts


def decide_offset(metadata: dict, pixels: dict) -> dict:
    """The scene's offset: the pixels' verdict where they tell, else the metadata's.

    `source` says what settled it: "metadata", "pixels" (settling what the metadata
    left open, or overruling it) or "undecided" (neither could tell: the provider's
    rule holds).

    "No offset" overrules any metadata: with the offset, those pixels would be
    negative reflectance. "Offset" only settles what the metadata left open: it says
    the pixels are plausible with the offset, not that they are impossible without
    it, so a baseline before 04.00 or Element 84's flag stands against it.
    """
    told = {"offset": ESA_BOA_ADD_OFFSET, "no offset": 0}.get(pixels["verdict"])
    # manifests written before providers had rules of their own held decided offsets
    metadata = {"decided": True} | metadata
    record = {"metadata": metadata, "pixels": pixels}
    if metadata["decided"] and told in (None, metadata["dn"]):
        return {"dn": metadata["dn"], "source": "metadata", "reason": metadata["reason"]} | record
    if metadata["decided"] and told == ESA_BOA_ADD_OFFSET:
        reason = (
            f"{metadata['reason']}; the pixels' offset ({pixels['evidence']}) does not overrule it"
        )
        return {"dn": metadata["dn"], "source": "metadata", "reason": reason} | record
    if told is None:
        reason = (
            f"{metadata['reason']}; the pixels cannot tell ({pixels['evidence']}), so it stands"
        )
        return {"dn": metadata["dn"], "source": "undecided", "reason": reason} | record
    how = "overruled" if metadata["decided"] else "settled"
    reason = (
        f"{metadata['reason']}; {how} by the pixels ({pixels['verdict']}: {pixels['evidence']})"
    )
    return {"dn": told, "source": "pixels", "reason": reason} | record


def harmonise(dn: np.ndarray, offset_dn: int, out: np.ndarray | None = None) -> np.ndarray:
    """Add the offset to non-zero DNs, clamping to 1 so no valid pixel wraps or becomes nodata.

    Into `out` (which may be `dn` itself: the fetch harmonises its strips in place) or a
    new array; in uint16 throughout, three passes over the pixels and no int32 copy.
    """
    if offset_dn == 0:
        if out is None:
            return dn
        np.copyto(out, dn)
        return out
    if dn.dtype != np.uint16:
        raise TypeError(f"expected uint16 DNs, got {dn.dtype}")
    nodata = dn == 0
    out = np.empty_like(dn) if out is None else out
    if offset_dn < 0:
        # max(dn, 1 - offset) + offset == max(dn + offset, 1), without leaving uint16
        np.maximum(dn, 1 - offset_dn, out=out)
        out -= np.uint16(-offset_dn)
    else:
        np.minimum(dn, np.iinfo(np.uint16).max - offset_dn, out=out)
        out += np.uint16(offset_dn)
    out[nodata] = 0
    return out
