"""Radiometric harmonisation of Sentinel-2 L2A digital numbers.

From processing baseline 04.00 (2022-01-25) ESA adds BOA_ADD_OFFSET (+1000 DN)
to every reflectance DN: reflectance = (DN - 1000) / 10000. Older products have
reflectance = DN / 10000. Harmonised output always follows the old convention,
so scenes of both eras composite together.

Earth Search's flags for this are wrong on some items (earth-search issues #9,
#66, #71), so the decision is made per item from the metadata and then checked
against the pixels; both the decision and its reason are recorded.
"""

from __future__ import annotations

import re

import numpy as np

OFFSET_BASELINE = (4, 0)
ESA_BOA_ADD_OFFSET = -1000
# SCL classes whose pixels tell nothing about the offset (no data, defective,
# shadow, clouds, cirrus, snow).
UNRELIABLE_SCL = (0, 1, 3, 8, 9, 10, 11)
MIN_SAMPLE_PIXELS = 500


def parse_baseline(text) -> tuple[int, int] | None:
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\.(\d+)\s*", str(text))
    return (int(match[1]), int(match[2])) if match else None


def offset_from_metadata(properties: dict, reflectance_asset: dict) -> dict:
    """Decide the DN offset of one item from its STAC metadata alone.

    Returns {"dn": int, "source": "metadata", "reason": str}; dn is added to
    every non-zero DN (so -1000 removes ESA's offset, 0 leaves pixels alone).
    """
    baseline_text = properties.get("s2:processing_baseline")
    baseline = parse_baseline(baseline_text)
    flag = properties.get("earthsearch:boa_offset_applied")
    bands = reflectance_asset.get("raster:bands") or [{}]
    scale, offset = bands[0].get("scale"), bands[0].get("offset")
    evidence = f"baseline {baseline_text}, boa_offset_applied={flag}, raster:bands offset={offset}"
    if baseline is not None and baseline < OFFSET_BASELINE:
        return _decision(0, f"{evidence}: baseline before 04.00 carries no offset")
    if offset and scale:
        dn = round(offset / scale)
        return _decision(dn, f"{evidence}: offset/scale from raster:bands")
    if baseline is not None or flag:
        return _decision(ESA_BOA_ADD_OFFSET, f"{evidence}: ESA's BOA_ADD_OFFSET from 04.00 on")
    return _decision(0, f"{evidence}: no baseline and no offset in the metadata")


def offset_from_baseline(properties: dict) -> dict:
    """ESA's rule alone, for sources that publish no offset metadata (Planetary
    Computer): from baseline 04.00 the DNs carry +1000."""
    baseline_text = properties.get("s2:processing_baseline")
    baseline = parse_baseline(baseline_text)
    if baseline is None:
        return _decision(0, f"baseline {baseline_text}: unknown, so no offset is assumed")
    if baseline < OFFSET_BASELINE:
        return _decision(0, f"baseline {baseline_text}: before 04.00, no offset")
    return _decision(
        ESA_BOA_ADD_OFFSET, f"baseline {baseline_text}: ESA's BOA_ADD_OFFSET from 04.00 on"
    )


def _decision(dn: int, reason: str, source: str = "metadata") -> dict:
    return {"dn": dn, "source": source, "reason": reason}


def check_offset_against_pixels(
    decision: dict, blue: np.ndarray, scl: np.ndarray, threshold: float
) -> dict:
    """Overrule a metadata offset that the pixels contradict.

    With the offset present a clear blue DN below 1000 means negative
    reflectance, which is rare; without it most land pixels are below 1000.
    A clear sample with more than `threshold` of its pixels below the offset
    therefore carries no offset, whatever the metadata claims.
    """
    if decision["dn"] >= 0:
        return decision
    clear = (blue > 0) & ~np.isin(scl, UNRELIABLE_SCL)
    count = int(clear.sum())
    if count < MIN_SAMPLE_PIXELS:
        return {**decision, "check": f"not checked: only {count} clear pixels in the sample"}
    below = float((blue[clear] < -decision["dn"]).mean())
    check = f"{below:.1%} of {count} clear blue pixels below {-decision['dn']} DN"
    if below > threshold:
        return _decision(
            0,
            f"{decision['reason']}; overruled by the pixels: {check} "
            f"(> {threshold:.0%}), so the offset was already removed",
            source="pixels",
        ) | {"check": check}
    return {**decision, "check": check}


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
