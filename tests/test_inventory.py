"""s2basemap.inventory: which objects get the one-listing inventory.

Its effect, through Snakemake and the S3 plugin on moto, is checked in
test_object_storage (a second run's requests)."""

from __future__ import annotations

import pytest

from s2basemap.inventory import run_prefix


@pytest.mark.parametrize(
    ("prefix", "located"),
    [
        ("s3://bucket/run", ("bucket", "run/")),
        ("s3://bucket/a/b/", ("bucket", "a/b/")),
        ("s3://bucket", ("bucket", "")),
        ("gcs://bucket/run", None),
        ("bucket/run", None),
    ],
)
def test_the_run_prefix_is_a_bucket_and_a_key_prefix_ending_in_a_slash(prefix, located):
    assert run_prefix(prefix) == located
