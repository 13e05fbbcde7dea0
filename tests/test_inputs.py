"""Corrupt or odd inputs, bad configurations and security: a correct result or a clear,
named error, never a traceback or a wrong mosaic."""

from __future__ import annotations

import json
import re
import ssl
import subprocess
import threading

import numpy as np
import pytest
import rasterio
from shapely.geometry import MultiPolygon, box

from conftest import REPO, run_snakemake, world_config
from s2basemap.aoi import read_aoi
from s2basemap.config import ConfigError, validate_config
from s2basemap.failures import SceneUnavailable
from s2basemap.fetch import FetchOptions, fetch_scene
from s2basemap.search import BANDS, SearchError, exclusion_reason, search_geometry, search_items
from test_products import reference_mosaic
from testworld import RangeServer, served_world
from testworld.build import ODD_COLLECTION, add_odd_collection


@pytest.fixture(scope="module")
def odd_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("odd-world")
    with served_world(root, add_odd_collection) as (world, _, stac, ids):
        workdir = tmp_path_factory.mktemp("odd-run")
        config = world_config(
            world,
            months=["2022-03"],
            stac={"url": stac.url, "collection": ODD_COLLECTION},
            # two of its five fetched scenes are broken files, left out (2 of 5 is within
            # 0.5; a third, 3 of 5, is not); they fail for their own reasons, at once, so
            # the timeout only keeps a good scene on a busy machine from failing the month
            fetch={
                "retries": 1,
                "backoff_seconds": 0.05,
                "timeout_seconds": 60,
                "max_left_out_fraction": 0.5,
            },
        )
        result = run_snakemake(workdir, config)
        yield world, ids, workdir, result


def test_odd_items_are_left_out_with_named_reasons(odd_run):
    world, ids, workdir, result = odd_run
    assert "Traceback" not in result.stdout
    metadata = json.loads((workdir / "results" / "2022-03" / "metadata.json").read_text())
    left_out = {e["id"]: e["reason"] for e in metadata["left_out"]}
    # the month was published without its two broken files, the fetch's only failures
    failed = {i for i, reason in left_out.items() if reason.startswith("failed: ")}
    assert failed == {ids["not_a_tiff"], ids["truncated"]}
    assert "not recognized as being in a supported file format" in left_out[ids["not_a_tiff"]]
    assert "red (" in left_out[ids["not_a_tiff"]] and "B04.tif" in left_out[ids["not_a_tiff"]]
    assert left_out[ids["not_a_tiff"]].startswith(
        "failed: unreadable (permanent) after 1 attempt: "
    )
    # a short read on every attempt, and the server's size says the file itself is short
    assert left_out[ids["truncated"]].startswith(
        "failed: unreadable (permanent) after 2 attempts: green ("
    )
    green = world.scene(ids["truncated"]).path("green")
    assert f"truncated file: {green.stat().st_size:,} bytes of the " in left_out[ids["truncated"]]
    assert left_out[ids["missing_asset"]].endswith("missing scl (asset 'scl')")
    # the API never returns an item off the AOI; had it done so, our own filter drops it
    assert ids["far_away"] not in left_out
    manifest = json.loads((workdir / "work" / "2022-03" / "manifest.json").read_text())
    assert ids["far_away"] not in {s["id"] for s in manifest["scenes"]}
    item = next(
        f
        for f in json.loads((world.root / "stac" / f"{ODD_COLLECTION}-items.json").read_text())[
            "features"
        ]
        if f["id"] == ids["far_away"]
    )
    assert (
        exclusion_reason(item, read_aoi(world.aoi_gpkg).geometry_4326, None)
        == "footprint does not intersect the AOI"
    )
    used = {s["id"]: s for s in metadata["scenes"]}
    assert set(used) == {ids["good"], ids["all_nodata"], ids["all_cloud"]}
    assert ids["far_away"] not in used
    assert used[ids["all_nodata"]]["valid_fraction"] == 0.0
    assert (
        used[ids["all_cloud"]]["valid_fraction"] == 0.0
        and used[ids["all_cloud"]]["cloud_fraction"] == 1.0
    )


def test_the_mosaic_holds_exactly_the_good_scene(odd_run):
    world, ids, workdir, _ = odd_run
    with rasterio.open(workdir / "results/2022-03/S2_RGBNIR_2022_03_01_to_2022_03_31.tif") as src:
        mosaic, crs, transform = src.read(), src.crs, src.transform
    with rasterio.open(
        workdir / "results/2022-03/S2_RGBNIR_2022_03_01_to_2022_03_31_count.tif"
    ) as src:
        count = src.read(1)
    scenes = [world.scene(ids[c]) for c in ("good", "all_nodata", "all_cloud")]
    expected, expected_count, ties = reference_mosaic(
        world, "2022-03", crs, transform, mosaic.shape[1:], scenes
    )
    assert count.max() == 1 and (count == 1).mean() > 0.3
    np.testing.assert_array_equal(count[~ties], expected_count[~ties])
    np.testing.assert_array_equal(mosaic[:, ~ties], expected[:, ~ties])


def test_aoi_across_the_antimeridian(tmp_path):
    import geopandas

    west, east = box(179.90, -17.2, 180.0, -17.1), box(-180.0, -17.2, -179.9, -17.1)
    path = tmp_path / "fiji.geojson"
    geopandas.GeoDataFrame(geometry=[MultiPolygon([west, east])], crs=4326).to_file(path)
    config = {
        "aoi": str(path),
        "months": ["2025-06"],
        "target": {"crs": "EPSG:4326", "resolution": 0.0001},
    }
    with pytest.raises(ConfigError, match="crosses the antimeridian") as excinfo:
        validate_config(config)
    assert excinfo.value.key == "target.crs"
    validate_config(config | {"target": {"crs": "EPSG:3832", "resolution": 10}})  # projected: fine
    hull = search_geometry(read_aoi(path).geometry_4326)
    assert hull.area < 0.05  # the two halves, not the 360 degrees between them


BAD_CONFIGS = [
    ({"months": "2025-06"}, "months"),
    ({"months": [202506]}, "months[0]"),
    ({"months": ["2025-00"]}, "months[0]"),
    ({"date_ranges": [{"start": "2025-06-01"}]}, "date_ranges[0].end"),
    ({"date_ranges": [{"start": "2025-06-01", "end": "2025-06-31"}]}, "date_ranges[0].end"),
    ({"stac": {"url": "earth-search"}}, "stac.url"),
    ({"stac": {"timeout_seconds": 0}}, "stac.timeout_seconds"),
    ({"stac": {"assets": {"swir": "B11"}}}, "stac.assets.swir"),
    ({"fetch": {"backoff_seconds": -1}}, "fetch.backoff_seconds"),
    ({"fetch": {"offset_check_threshold": 2}}, "fetch.offset_check_threshold"),
    ({"mask": {"mode": "clouds"}}, "mask.mode"),
    ({"mask": {"scl_invalid": [12]}}, "mask.scl_invalid[0]"),
    ({"mask": {"ocm": {"inference_resolution": 5}}}, "mask.ocm.inference_resolution"),
    ({"mask": {"ocm": {"patch_size": 300, "patch_overlap": 300}}}, "mask.ocm.patch_overlap"),
    ({"mask": {"dilation_metres": -5}}, "mask.dilation_metres"),
    ({"target": {"crs": "EPSG:4326", "resolution": 10}}, "target.resolution"),
    ({"target": {"resolution": [10]}}, "target.resolution"),
    ({"target": {"crs": ""}}, "target.crs"),
    ({"composite": {"resampling": "lanczos"}}, "composite.resampling"),
    ({"overrides": {"2031-01": {"composite": {"percentile": 50}}}}, "overrides.2031-01"),
    (
        {"overrides": {"2022-01": {"composite": {"percentile": 101}}}},
        "overrides.2022-01.composite.percentile",
    ),
    ({"upload": {"enabled": True}}, "upload.bucket"),
    ({"notify": {"webhook_env": "https://hooks.slack.com/x"}}, "notify.webhook_env"),
    ({"storage": {"free_disk_limit_gb": 0}}, "storage.free_disk_limit_gb"),
    ({"work_dir": ""}, "work_dir"),
]


@pytest.mark.parametrize(("change", "key"), BAD_CONFIGS, ids=[k for _, k in BAD_CONFIGS])
def test_bad_configuration_fails_before_any_job(world, tmp_path, change, key):
    config = world_config(world, months=["2022-01"])
    for section, value in change.items():
        config[section] = (
            {**config[section], **value}
            if isinstance(value, dict) and isinstance(config.get(section), dict)
            else value
        )
    result = run_snakemake(tmp_path, config, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"Invalid configuration: config key '{key}'" in output, output[-2000:]
    assert "Traceback" not in output
    assert not (tmp_path / "work").exists()


def test_an_unreachable_stac_api_fails_its_job_in_one_line_with_the_traceback_in_its_log(
    world, tmp_path
):
    config = world_config(world, months=["2022-01"], stac={"url": "http://127.0.0.1:9/v1"})
    result = run_snakemake(tmp_path, config, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    errors = [line for line in output.splitlines() if line.startswith("ERROR ")]
    assert len(errors) == 1, output[-3000:]
    # where the search went (a config naming only a url searches sentinel-2-l2a), the
    # connection's own words for why it failed, and where the traceback is
    assert re.fullmatch(
        r"ERROR STAC search at http://127\.0\.0\.1:9/v1 \(collection sentinel-2-l2a\) "
        r"failed: .*\bConnection refused\b.* \(traceback in work/logs/search/2022-01\.log\)",
        errors[0],
    ), errors[0]
    assert "Traceback" not in output and "Retrying" not in output  # libraries' noise: the log only
    job_log = (tmp_path / "work" / "logs" / "search" / "2022-01.log").read_text()
    assert "Traceback (most recent call last)" in job_log and "SearchError" in job_log
    assert len(output.splitlines()) < 100, len(output.splitlines())


@pytest.fixture(scope="module")
def tls_server(world, tmp_path_factory):
    """The world's files over HTTPS with a self-signed certificate nobody trusts."""
    tmp = tmp_path_factory.mktemp("tls")
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-keyout",
            str(tmp / "key.pem"),
            "-out",
            str(tmp / "cert.pem"),
            "-subj",
            "/CN=127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    server = RangeServer(world.root)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp / "cert.pem", tmp / "key.pem")
    server.httpd.socket = context.wrap_socket(server.httpd.socket, server_side=True)
    threading.Thread(target=server.httpd.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.port}"
    server.stop()


def test_tls_verification_stays_on_for_imagery(world, tls_server, tmp_path):
    scene = world.scene("S2A_15SYU_20220128_0_L2A")
    spec = {
        "id": scene.id,
        "assets": {b: world.url(scene.path(b)).replace(world.base_url, tls_server) for b in BANDS},
        "offset": {"dn": -1000, "source": "metadata", "reason": "test"},
    }
    # refused, and not a reason to publish a month without the scene
    with pytest.raises(SceneUnavailable) as caught:
        fetch_scene(
            spec,
            read_aoi(world.aoi_gpkg),
            tmp_path / "s.tif",
            FetchOptions(retries=0, timeout_seconds=60),  # the handshake fails at once
        )
    assert re.search(r"SSL|certificate", caught.value.entry["reason"], re.IGNORECASE), (
        caught.value.entry["reason"]
    )
    assert not (tmp_path / "s.tif").exists()


def test_tls_verification_stays_on_for_search(world, tls_server):
    from s2basemap.periods import Period

    with pytest.raises(SearchError, match=r"(?i)ssl|certificate"):
        search_items(
            tls_server,
            "sentinel-2-l2a",
            read_aoi(world.aoi_gpkg).geometry_4326,
            Period.month("2022-01"),
            timeout=60,  # the handshake fails at once; a timeout would be another failure
        )


def test_no_code_turns_tls_verification_off():
    pattern = re.compile(
        r"UNSAFESSL[\"']?\s*[:=]|verify\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False"
    )
    for path in list((REPO / "src").rglob("*.py")) + list((REPO / "workflow").rglob("*.smk")):
        assert not pattern.search(path.read_text()), path


def test_a_run_writes_only_inside_its_directories(world, tmp_path, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)  # conftest shares one between runs
    run_dir = tmp_path / "run"
    config = world_config(world, months=["2022-01"], work_dir="scratch/work", results_dir="out")
    before = set(REPO.rglob("*"))
    run_snakemake(run_dir, config)
    assert {p.name for p in run_dir.iterdir()} <= {"scratch", "out", ".snakemake", "config.yaml"}
    assert list((run_dir / "scratch" / "work" / ".cache" / "numba").rglob("*.nbi"))
    # the repository's own .snakemake is the README's dry run from the repository root
    # (test_ops), which another pytest worker may run meanwhile; this run's state is
    # under run_dir, checked above
    new_in_repo = {
        p
        for p in set(REPO.rglob("*")) - before
        if ("__pycache__" not in p.parts or p.suffix in (".nbi", ".nbc"))
        and not p.is_relative_to(REPO / ".snakemake")
    }
    assert not new_in_repo, sorted(new_in_repo)[:10]
