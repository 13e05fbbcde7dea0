"""Operations: Slack messages to a webhook receiver and uploads to an S3 server, both
on 127.0.0.1; secrets stay out of every file; profiles and the report work."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio
from stacschemas import validate

from conftest import REPO, run_snakemake, s3_endpoint, world_config
from testworld.servers import WebhookReceiver

BUCKET = "mosaics"
SECRET_KEY = "s3-secret-9f8e7d6c5b4a"
WEBHOOK_SECRET = "T0000/B0000/hooksecret1234567890"
MONTHS = ["2022-01", "2022-02"]
COLLECTION = "arkansas/monthly/collection.json"  # beside the months' folders it links
PRODUCT_FILES = {
    "metadata.json",
    "item.json",
    "S2_RGBNIR_{d}.tif",
    "S2_RGBNIR_{d}_count.tif",
    "S2_RGBNIR_{d}_quicklook.png",
}
DATES = {"2022-01": "2022_01_01_to_2022_01_31", "2022-02": "2022_02_01_to_2022_02_28"}


@pytest.fixture(scope="module")
def s3_server():
    with s3_endpoint(SECRET_KEY, [BUCKET]) as (server, env, s3):
        yield server.url, env, s3


@pytest.fixture(scope="module")
def operated_run(world, s3_server, tmp_path_factory):
    url, s3_env, s3 = s3_server
    hook = WebhookReceiver().start()
    workdir = tmp_path_factory.mktemp("ops")
    webhook_url = f"{hook.url}/services/{WEBHOOK_SECRET}"
    env = s3_env | {"S2B_TEST_WEBHOOK": webhook_url}
    config = world_config(
        world, scenario="operated", values={"s3_url": url, "bucket": BUCKET}, months=MONTHS
    )
    first = run_snakemake(workdir, config, env=env)
    first_messages = list(hook.texts)
    objects = {o["Key"]: o for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    second = run_snakemake(workdir, config, env=env)  # nothing to do
    forced = run_snakemake(workdir, config, "--forcerun", "upload_period", env=env)
    again = {o["Key"]: o for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    report = workdir / "report.html"
    run_snakemake(workdir, config, "--report", str(report), env=env)
    yield {
        "workdir": workdir,
        "hook": hook,
        "first_messages": first_messages,
        "objects": objects,
        "again": again,
        "webhook_url": webhook_url,
        "runs": [first, second, forced],
        "report": report,
        "s3": s3,
    }
    hook.stop()


def test_messages_cover_start_each_month_and_the_summary(operated_run):
    texts = operated_run["first_messages"]
    assert "s2basemap run started" in texts[0] and "2022-01, 2022-02" in texts[0]
    for month in MONTHS:
        done = [t for t in texts if t.startswith(f":white_check_mark: {month} mosaic done")]
        assert len(done) == 1
        assert "6 scenes used" in done[0] and "valid coverage" in done[0]
        assert f"s3://{BUCKET}/arkansas/monthly/{month}/" in done[0]
    january = next(t for t in texts if t.startswith(":white_check_mark: 2022-01"))
    assert "S2B_15SYU_20220115_0_L2A: duplicate of" in january  # left-out scenes are named
    assert texts[-1].startswith(":checkered_flag: s2basemap run finished")
    assert all(p.endswith(WEBHOOK_SECRET) for p in operated_run["hook"].paths)


def test_products_are_uploaded_once_and_verified(operated_run):
    workdir, objects = operated_run["workdir"], operated_run["objects"]
    expected = {
        f"arkansas/monthly/{m}/{name.format(d=DATES[m])}" for m in MONTHS for name in PRODUCT_FILES
    }
    assert set(objects) == expected | {COLLECTION}
    s3 = operated_run["s3"]
    for key in expected | {COLLECTION}:
        local = workdir / "results" / key.removeprefix("arkansas/monthly/")
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert body == local.read_bytes()
    # the forced rerun of the upload jobs found every object already there
    assert operated_run["again"] == objects
    for receipt in [*(f"{month}/upload.json" for month in MONTHS), "collection-upload.json"]:
        receipt = json.loads((workdir / "work" / receipt).read_text())
        assert {o["action"] for o in receipt["objects"]} == {"skipped"}
    assert "Nothing to be done" in operated_run["runs"][1].stdout + operated_run["runs"][1].stderr


PUBLIC_READ = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": "*",
            "Action": "s3:GetObject",
            "Resource": f"arn:aws:s3:::{BUCKET}/*",
        }
    ],
}


@pytest.mark.parametrize("where", ["results folder", "bucket"])
def test_odc_stac_loads_the_series_from_its_catalog_alone(
    operated_run, s3_server, where, monkeypatch
):
    """The loader opens the Collection, follows its relative links to the months' Items
    and their COGs, and gives each month's pixels as the COG holds them; over HTTP
    from the bucket (path-style, as a public bucket serves them) as from the folder."""
    import odc.stac
    import pystac

    results = operated_run["workdir"] / "results"
    url, _, s3 = s3_server
    root = str(results) if where == "results folder" else f"{url}/{BUCKET}/arkansas/monthly"
    if where == "bucket":  # readable by anyone, as a basemap's bucket is served
        s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(PUBLIC_READ))
        # moto answers an anonymous HEAD 403 whatever the policy (S3 allows it with
        # GetObject): GDAL goes straight to ranged GETs
        monkeypatch.setenv("CPL_VSIL_CURL_USE_HEAD", "NO")
    for document in ["collection.json", *(f"{month}/item.json" for month in MONTHS)]:
        validate(json.loads((results / document).read_text()))  # what was uploaded, too
    collection = pystac.Collection.from_file(f"{root}/collection.json")
    items = sorted(collection.get_items(), key=lambda item: item.properties["start_datetime"])
    assert [item.properties["start_datetime"][:7] for item in items] == MONTHS
    year = readme_snippet(f"{root}/collection.json")  # the README's, as written there
    assert list(year.data_vars) == ["red", "green", "blue", "nir"]
    assert list(year.time.dt.strftime("%Y-%m").values) == MONTHS
    counts = odc.stac.load(items, bands=["count"], chunks={})
    for index, month in enumerate(MONTHS):
        cog = results / month / f"S2_RGBNIR_{DATES[month]}.tif"
        with rasterio.open(cog) as src:
            expected = src.read()
            assert year.odc.geobox.shape == src.shape
            assert year.odc.geobox.affine == src.transform
        for band, name in enumerate(year.data_vars):
            loaded = year[name].isel(time=index).values
            np.testing.assert_array_equal(loaded, expected[band], err_msg=f"{month} {name}")
        with rasterio.open(cog.with_name(cog.name.replace(".tif", "_count.tif"))) as src:
            np.testing.assert_array_equal(counts["count"].isel(time=index).values, src.read(1))


def readme_snippet(collection_href: str):
    """Run the README's odc-stac snippet (its own code, hence exec) on `collection_href`."""
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n", text.index("A year of mosaics with")) + len("```python\n")
    code = text[start : text.index("```", start)]
    assert '"results/collection.json"' in code
    scope: dict = {}
    exec(code.replace('"results/collection.json"', repr(collection_href)), scope)  # noqa: S102
    reflectance, year = scope["reflectance"], scope["year"]
    np.testing.assert_allclose(
        reflectance["red"].values, np.where(year["red"] > 0, year["red"] * 0.0001, np.nan)
    )
    return year


def test_products_not_kept_locally_are_deleted_once_uploaded(
    world, s3_server, operated_run, tmp_path
):
    url, env, s3 = s3_server
    config = world_config(
        world,
        months=["2022-01"],
        upload={
            "enabled": True,
            "endpoint_url": url,
            "bucket": BUCKET,
            "prefix": "uploaded-only",
            "keep_local": False,
        },
    )
    run_snakemake(tmp_path, config, env=env)
    month, dates = "2022-01", DATES["2022-01"]
    kept = operated_run["workdir"] / "results" / month  # the same month, kept locally
    for name in (f"S2_RGBNIR_{dates}.tif", f"S2_RGBNIR_{dates}_count.tif"):
        assert not (tmp_path / "results" / month / name).exists(), name
        body = s3.get_object(Bucket=BUCKET, Key=f"uploaded-only/{month}/{name}")["Body"].read()
        assert body == (kept / name).read_bytes(), name
    for name in ("metadata.json", "item.json", f"S2_RGBNIR_{dates}_quicklook.png"):
        assert (tmp_path / "results" / month / name).read_bytes() == s3.get_object(
            Bucket=BUCKET, Key=f"uploaded-only/{month}/{name}"
        )["Body"].read(), name
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    assert plan["products_kept"] is False
    from s2basemap.storage import KERNEL_CACHE_BYTES

    # what stays: the jobs' records and the kernel cache, not the products
    assert plan["total"]["final_bytes"] == KERNEL_CACHE_BYTES + sum(
        p["bookkeeping_bytes"] for p in plan["periods"].values()
    )
    assert "deletes each month's once uploaded" in (tmp_path / "work" / "plan.txt").read_text()
    again = run_snakemake(tmp_path, config, env=env)  # the deleted products are not remade
    assert "Nothing to be done" in again.stdout + again.stderr


def test_no_secret_reaches_any_log_output_or_report(operated_run):
    workdir = operated_run["workdir"]
    secrets = [operated_run["webhook_url"].encode(), WEBHOOK_SECRET.encode(), SECRET_KEY.encode()]
    scanned = 0
    for path in workdir.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            scanned += 1
            for secret in secrets:
                assert secret not in data, f"{secret!r} found in {path}"
                assert base64.b64encode(secret)[:-4] not in data, f"{secret!r} (base64) in {path}"
    for run in operated_run["runs"]:
        for secret in secrets:
            assert secret.decode() not in run.stdout + run.stderr
    assert scanned > 100  # logs, benchmarks, metadata, products, .snakemake, the report


def test_report_holds_each_months_quicklook_and_statistics(operated_run):
    html = operated_run["report"].read_text()
    workdir = operated_run["workdir"]
    for month in MONTHS:
        png = (workdir / "results" / month / f"S2_RGBNIR_{DATES[month]}_quicklook.png").read_bytes()
        stats = (workdir / "work" / month / "statistics.tsv").read_bytes()
        assert base64.b64encode(png)[:200].decode() in html
        assert base64.b64encode(stats)[:60].decode() in html
        assert b"valid coverage (%)" in stats and b"scenes used\t6" in stats


def test_a_report_before_any_run_says_to_run_first(world, tmp_path):
    result = run_snakemake(
        tmp_path,
        world_config(world, months=MONTHS),
        "--report",
        str(tmp_path / "report.html"),
        check=False,
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        "No month is finished yet (2022-01, 2022-02), so there is nothing to report: "
        "run `snakemake` first"
    ) in output, output[-2000:]
    assert "statistics.tsv" not in output and "Traceback" not in output
    assert not (tmp_path / "report.html").exists()


def test_a_failing_job_is_reported_with_its_log(world, tmp_path):
    hook = WebhookReceiver().start()
    try:
        config = world_config(
            world,
            months=["2022-01"],
            notify={"webhook_env": "S2B_TEST_WEBHOOK"},
            stac={"url": "http://127.0.0.1:9/v1"},
        )  # nothing listens
        result = run_snakemake(tmp_path, config, check=False, env={"S2B_TEST_WEBHOOK": hook.url})
    finally:
        hook.stop()
    assert result.returncode != 0
    errors = [t for t in hook.texts if t.startswith(":x:")]
    assert errors and "rule search failed (period=2022-01)" in errors[0]
    assert "last lines of work/logs/search/2022-01.log" in errors[0]
    assert "STAC search at http://127.0.0.1:9/v1" in errors[0]


def test_a_broken_webhook_never_fails_the_run(world, tmp_path):
    config = world_config(world, months=["2022-01"], notify={"webhook_env": "S2B_TEST_WEBHOOK"})
    result = run_snakemake(
        tmp_path, config, "plan", env={"S2B_TEST_WEBHOOK": "http://127.0.0.1:9/hook"}
    )
    assert result.returncode == 0
    assert "Slack message not sent" in result.stdout + result.stderr
    assert "127.0.0.1:9/hook" not in result.stdout + result.stderr  # redacted


def test_vast_profile_resolves_from_the_repository_root():
    """The literal command of the README, as a dry run (it needs no network)."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "vast", "--cores", "all", "-n"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Using profiles vast" in result.stdout + result.stderr
    assert Path(REPO / "vast").resolve() == (REPO / "profiles" / "vast").resolve()
