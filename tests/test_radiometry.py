"""BOA offset: per-item decisions from metadata and pixels, harmonisation without wrap-around."""

from __future__ import annotations

import numpy as np
import pytest

from s2basemap.radiometry import check_offset_against_pixels, harmonise, offset_from_metadata

REFLECTANCE = {"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}


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


@pytest.mark.parametrize(
    ("props", "asset", "dn"),
    [
        ({"s2:processing_baseline": "03.01"}, REFLECTANCE, 0),  # old baseline: offset ignored
        (
            {"s2:processing_baseline": "04.00", "earthsearch:boa_offset_applied": True},
            REFLECTANCE,
            -1000,
        ),
        ({"s2:processing_baseline": "05.11"}, {}, -1000),  # no raster:bands: ESA's rule
        (
            {"s2:processing_baseline": "04.00"},
            {"raster:bands": [{"scale": 0.0001, "offset": -0.2}]},
            -2000,
        ),
        ({}, {}, 0),
    ],
)
def test_metadata_decision(props, asset, dn):
    decision = offset_from_metadata(props, asset)
    assert decision["dn"] == dn and decision["source"] == "metadata" and decision["reason"]


@pytest.mark.parametrize(
    ("baseline", "dn"), [("03.01", 0), ("04.00", -1000), ("05.11", -1000), (None, 0)]
)
def test_the_baseline_rule_alone(baseline, dn):
    from s2basemap.radiometry import offset_from_baseline

    props = {"s2:processing_baseline": baseline} if baseline else {}
    # a raster:bands offset, were there one, is not this rule's evidence
    decision = offset_from_baseline(props)
    assert (
        decision["dn"] == dn
        and decision["source"] == "metadata"
        and f"baseline {baseline}" in decision["reason"]
    )


def land_sample(offset: int, n: int = 4000):
    rng = np.random.default_rng(0)
    blue = (rng.uniform(300, 900, n) + offset).astype(np.uint16)
    scl = np.full(n, 4, dtype=np.uint8)
    return blue, scl


def test_pixels_overrule_an_offset_they_do_not_carry():
    decision = {"dn": -1000, "source": "metadata", "reason": "flag"}
    blue, scl = land_sample(0)
    checked = check_offset_against_pixels(decision, blue, scl, threshold=0.05)
    assert checked["dn"] == 0 and checked["source"] == "pixels"
    assert "100.0% of 4000" in checked["reason"]


def test_pixels_confirm_a_real_offset_and_ignore_clouds():
    decision = {"dn": -1000, "source": "metadata", "reason": "flag"}
    blue, scl = land_sample(1000)
    blue[:300], scl[:300] = 200, 9  # dark-looking pixels under cloud do not count
    checked = check_offset_against_pixels(decision, blue, scl, threshold=0.05)
    assert checked["dn"] == -1000 and "0.0% of 3700" in checked["check"]


def test_too_few_clear_pixels_keep_the_metadata():
    decision = {"dn": -1000, "source": "metadata", "reason": "flag"}
    blue, scl = land_sample(0, n=100)
    assert check_offset_against_pixels(decision, blue, scl, 0.05)["dn"] == -1000
