"""BOA offset: each provider's metadata rule, the pixels' verdict on dark and arid land,
the decision that combines them, and harmonisation without wrap-around."""

from __future__ import annotations

import numpy as np
import pytest

from s2basemap.radiometry import (
    decide_offset,
    harmonise,
    offset_from_metadata,
    pixel_verdict,
)

ESA = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}  # what Earth Search items say


def test_harmonise_never_wraps_and_keeps_nodata():
    dn = np.arange(0, 3001, dtype=np.uint16)
    out = harmonise(dn, -1000)
    assert out.dtype == np.uint16
    assert out[0] == 0  # nodata stays nodata
    assert (out[1:1001] == 1).all()  # DN 1..1000 (negative reflectance) clamp to 1, not ~65k
    expected = dn[1001:].astype(np.int64) - 1000
    assert (out[1001:] == expected).all()
    assert out.max() == 2000


def test_zero_offset_is_identity():
    dn = np.array([0, 1, 999, 65535], dtype=np.uint16)
    assert (harmonise(dn, 0) == dn).all()


def props(baseline=None, flag=None) -> dict:
    out = {}
    if baseline is not None:
        out["s2:processing_baseline"] = baseline
    if flag is not None:
        out["earthsearch:boa_offset_applied"] = flag
    return out


# (rule, baseline, flag, raster:bands, expected dn, decided by the metadata)
RULES = [
    # Collection 1: the pixels carry what raster:bands says
    ("collection-1", "05.10", None, ESA, -1000, True),
    ("collection-1", "05.11", None, {}, -1000, True),  # without raster:bands: ESA's rule
    # Earth Search l2a: flag true is Element 84's harmonisation, whatever raster:bands says
    ("earth-search-l2a", "04.00", True, ESA, 0, True),
    ("earth-search-l2a", "05.09", True, ESA, 0, True),
    # flag false or absent from 04.00: mis-flagged both ways, so undecided (ESA's rule
    # until the pixels tell)
    ("earth-search-l2a", "04.00", False, ESA, -1000, False),
    ("earth-search-l2a", "05.00", None, ESA, -1000, False),
    ("earth-search-l2a", "03.01", False, ESA, 0, True),  # before 04.00: never an offset
    ("earth-search-l2a", None, None, ESA, 0, False),
    # Planetary Computer: ESA's baseline rule, no other metadata
    ("baseline", "04.00", None, {}, -1000, True),
    ("baseline", "03.01", None, {}, 0, True),
    ("baseline", None, None, {}, 0, False),
    # any other API: the flag, then raster:bands, then ESA's rule
    ("metadata", "04.00", True, ESA, 0, True),
    ("metadata", "04.00", None, {"raster:bands": [{"scale": 0.0001, "offset": -0.2}]}, -2000, True),
    ("metadata", "05.11", None, {}, -1000, True),
    ("metadata", "02.14", None, ESA, 0, True),
]


@pytest.mark.parametrize(("rule", "baseline", "flag", "asset", "dn", "decided"), RULES)
def test_each_providers_metadata_rule(rule, baseline, flag, asset, dn, decided):
    decision = offset_from_metadata(rule, props(baseline, flag), asset)
    assert (decision["dn"], decision["decided"], decision["rule"]) == (dn, decided, rule)
    assert f"baseline {baseline}" in decision["reason"]


RNG = np.random.default_rng(7)


def land(classes: dict[int, tuple[int, tuple, tuple, tuple]], offset: bool):
    """A clear sample: per SCL class, (pixels, blue, green and red reflectance ranges);
    returns (3, N) DNs (with ESA's +1000 when `offset`) and the (N,) classes."""
    bands, scl = [], []
    for cls, (n, *ranges) in classes.items():
        bands.append(np.stack([RNG.uniform(low, high, n) for low, high in ranges]))
        scl.append(np.full(n, cls, dtype=np.uint8))
    dn = np.concatenate(bands, axis=1) * 10000 + (1000 if offset else 0)
    return np.clip(np.rint(dn), 1, 65535).astype(np.uint16), np.concatenate(scl)


# Reflectance of clear land (facts.md, "Bright land"): vegetation and water are dark in
# the visible bands; bare arid soil is bright, blue 0.1-0.2.
DARK_LAND = {
    4: (3000, (0.01, 0.06), (0.03, 0.10), (0.01, 0.08)),  # vegetation
    6: (800, (0.02, 0.07), (0.02, 0.08), (0.005, 0.05)),  # water
    5: (1200, (0.05, 0.12), (0.07, 0.15), (0.08, 0.18)),  # fields, towns
}
ARID_LAND = {
    5: (9000, (0.10, 0.20), (0.14, 0.26), (0.18, 0.32)),  # desert
    4: (500, (0.03, 0.08), (0.05, 0.11), (0.04, 0.10)),  # irrigated fields
    6: (200, (0.03, 0.08), (0.04, 0.10), (0.02, 0.08)),  # a river
}
DESERT = {5: (9000, (0.10, 0.20), (0.14, 0.26), (0.18, 0.32))}


@pytest.mark.parametrize("ground", [DARK_LAND, ARID_LAND], ids=["dark", "arid"])
@pytest.mark.parametrize("offset", [True, False])
def test_the_pixels_tell_the_offset_on_dark_and_arid_land(ground, offset):
    bands, scl = land(ground, offset)
    verdict = pixel_verdict(bands, scl, threshold=0.05)
    assert verdict["verdict"] == ("offset" if offset else "no offset"), verdict
    assert verdict["dark_pixels"] == sum(ground[c][0] for c in (4, 6))


def test_a_desert_with_few_dark_pixels_is_told_by_them():
    """Fields and a river on 2 % of a desert: a share over all clear pixels (the blue
    check this replaced) stays under the threshold either way; the dark classes' does not."""
    sparse = {5: (30000, *DESERT[5][1:]), 4: (500, *ARID_LAND[4][1:]), 6: (200, *ARID_LAND[6][1:])}
    for offset in (True, False):
        bands, scl = land(sparse, offset)
        assert (bands.min(axis=0) < 900).mean() < 0.05
        expected = "offset" if offset else "no offset"
        assert pixel_verdict(bands, scl, threshold=0.05)["verdict"] == expected


def test_a_uniform_bright_desert_cannot_tell():
    for offset in (True, False):
        bands, scl = land(DESERT, offset)
        verdict = pixel_verdict(bands, scl, threshold=0.05)
        assert verdict["verdict"] == "undecided" and verdict["dark_pixels"] == 0, verdict


def test_a_dark_desert_without_dark_classes_still_shows_no_offset():
    """Dark soil SCL calls not vegetated: below 900 DN, it cannot carry the offset."""
    soil = {5: (3000, (0.02, 0.06), (0.03, 0.07), (0.03, 0.08))}
    bands, scl = land(soil, offset=False)
    assert pixel_verdict(bands, scl, threshold=0.05)["verdict"] == "no offset"


def test_clouds_shadows_and_nodata_tell_nothing():
    bands, scl = land(DARK_LAND, offset=True)
    # dark-looking pixels under cloud shadow, and nodata, are not evidence
    bands[:, :2000], scl[:2000] = 150, 3
    bands[:, 2000:2500] = 0
    verdict = pixel_verdict(bands, scl, threshold=0.05)
    assert verdict["verdict"] == "offset"
    assert verdict["clear_pixels"] == 5000 - 2500
    few_bands, few_scl = bands[:, :2600], scl[:2600]  # 100 clear pixels left
    assert pixel_verdict(few_bands, few_scl, 0.05)["verdict"] == "undecided"


def metadata(dn: int, decided: bool) -> dict:
    return {"dn": dn, "decided": decided, "rule": "test", "reason": "meta"}


def verdict(name: str) -> dict:
    return {"verdict": name, "evidence": f"<{name}>"}


@pytest.mark.parametrize(
    ("meta", "pixels", "dn", "source"),
    [
        # the pixels settle what the metadata leaves open
        (metadata(-1000, False), "no offset", 0, "pixels"),
        (metadata(-1000, False), "offset", -1000, "pixels"),
        # neither can tell: the provider's rule stands, and says so
        (metadata(-1000, False), "undecided", -1000, "undecided"),
        # decided metadata: confirmed, or overruled by pixels that cannot carry it
        (metadata(-1000, True), "offset", -1000, "metadata"),
        (metadata(-1000, True), "undecided", -1000, "metadata"),
        (metadata(-1000, True), "no offset", 0, "pixels"),
        # a decided 0 (a flag, or a baseline before 04.00) stands against "offset"
        (metadata(0, True), "offset", 0, "metadata"),
        (metadata(0, True), "no offset", 0, "metadata"),
    ],
)
def test_the_decision_and_what_settled_it(meta, pixels, dn, source):
    decision = decide_offset(meta, verdict(pixels))
    assert (decision["dn"], decision["source"]) == (dn, source)
    assert decision["metadata"] == meta and decision["pixels"] == verdict(pixels)
    assert decision["reason"].startswith("meta")
    if source != "metadata" or decision["dn"] != {"offset": -1000, "no offset": 0}.get(pixels, dn):
        assert f"<{pixels}>" in decision["reason"]  # the evidence that settled or disagreed
