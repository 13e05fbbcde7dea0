"""Object storage as the only shared state (Snakemake's S3 storage plugin on moto).

Every run starts from a checkout of its own, as a user's would: the workflow, the
package and the default config in a git repository (Snakemake ships a run's
git-tracked files to jobs that share no filesystem). The same test-world config runs
three ways, and the published files must be the same bytes:

- locally, the reference;
- with `--default-storage-provider s3`: every file of the run is an object, jobs work
  on local copies;
- through cluster-generic with a loopback "cluster" (tests/loopback) that starts
  every job in a fresh empty directory, with `--shared-fs-usage none`: a job sees
  only its declared inputs, fetched from storage, and the sources Snakemake deploys.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
import yaml

from conftest import (
    REPO,
    fingerprint,
    planned_jobs,
    products,
    run_snakemake,
    s3_endpoint,
    world_config,
)
from s2basemap.layout import Layout
from testworld.servers import WebhookReceiver

BUCKET = "runs"
# the job's rule and wildcards, which Snakemake writes at the top of every job script
PROPERTIES = re.compile(r"(?m)^# properties = (.*)$")
LOOPBACK = REPO / "tests" / "loopback"


def checkout(path: Path) -> Path:
    """The repository's workflow, package and default config, as a git repository at `path`."""
    files = subprocess.run(
        ["git", "ls-files", "workflow", "src", "config", "envs"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in files:
        source, target = REPO / name, path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_symlink():
            target.symlink_to(source.readlink())
        else:
            shutil.copy2(source, target)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=path, check=True)
    subprocess.run([*git, "add", "-A"], cwd=path, check=True)
    return path


def run(path: Path, config: dict, *args, check=True, env=None) -> subprocess.CompletedProcess:
    """The workflow of the checkout at `path`, run from there as a user would."""
    return run_snakemake(
        path,
        config,
        *args,
        check=check,
        timeout=1500,
        env=env,
        snakefile=path / "workflow" / "Snakefile",
        from_workdir=True,
    )


def storage_args(s3, prefix: str) -> list[str]:
    return [
        "--default-storage-provider",
        "s3",
        "--default-storage-prefix",
        f"s3://{BUCKET}/{prefix}",
        "--storage-s3-endpoint-url",
        s3.url,
    ]


def isolated_args() -> list[str]:
    return [
        "--executor",
        "cluster-generic",
        "--cluster-generic-submit-cmd",
        str(LOOPBACK / "submit.sh"),
        "--cluster-generic-status-cmd",
        str(LOOPBACK / "status.sh"),
        "--jobs",
        "4",
        # the loopback's status is a file check: poll each second, not every 10 s
        "--seconds-between-status-checks",
        "1",
        "--shared-fs-usage",
        "none",
        "--job-deploy-sources",
    ]


def only_per_node_state(path: Path) -> bool:
    """Whether the run wrote nothing beside its checkout but the per-node files (the
    outage watch, numba's cache): every file of the run is an object."""
    layout = Layout.from_config(yaml.safe_load((path / "config" / "config.yaml").read_text()))
    per_node = {path / layout.outage(), path / layout.numba_cache()}
    written = {p for p in (path / layout.work_dir).rglob("*") if p.is_file()}
    return not (path / layout.results_dir).exists() and all(
        any(p == node or node in p.parents for node in per_node) for p in written
    )


def stored_products(client, prefix: str) -> dict[str, str]:
    """The fingerprint of every object under `prefix`/results/, by its path there."""
    listing = client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/results/")
    return {
        name: fingerprint(
            name, client.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read(), False
        )
        for o in listing.get("Contents", [])
        if (name := o["Key"].removeprefix(f"{prefix}/results/"))
    }


@pytest.fixture(scope="module")
def s3():
    with s3_endpoint(buckets=[BUCKET]) as (server, env, client):
        server.env, server.client = env, client
        yield server


@pytest.fixture(scope="module")
def reference(world, tmp_path_factory):
    """The test world run locally: the products every other run must equal."""
    path = checkout(tmp_path_factory.mktemp("local"))
    run(path, world_config(world))
    found = products(path)
    assert any(name.endswith("_count.tif") for name in found)
    return found


@pytest.fixture(scope="module")
def on_s3(world, s3, tmp_path_factory):
    path = checkout(tmp_path_factory.mktemp("s3"))
    args = storage_args(s3, "s3run")
    config = world_config(world)
    slack = WebhookReceiver().start()
    try:
        first = run(path, config, *args, env=s3.env | {"SLACK_WEBHOOK_URL": slack.url})
    finally:
        slack.stop()
    s3.requests.clear()
    again = run(path, config, *args, "--dry-run", env=s3.env)
    again_requests = sum(s3.requests.values())
    override = {"overrides": {"2022-02": {"composite": {"percentile": 50}}}}
    changed = run(path, config | override, *args, "--dry-run", env=s3.env)
    return {
        "path": path,
        "first": first,
        "again": again,
        "changed": planned_jobs(changed.stdout),
        "messages": slack.texts,
        "again_requests": again_requests,
    }


def test_on_s3_default_storage_the_products_are_the_local_runs(on_s3, s3, reference):
    assert stored_products(s3.client, "s3run") == reference
    assert only_per_node_state(on_s3["path"])


def test_on_s3_the_messages_say_where_the_months_are_and_what_they_hold(on_s3):
    months = [m for m in on_s3["messages"] if "mosaic done" in m]
    assert sorted(m.split(" mosaic done", 1)[0] for m in months) == [
        ":white_check_mark: 2022-01",
        ":white_check_mark: 2022-02",
    ]
    for period in ("2022-01", "2022-02"):  # where the results are: objects
        assert any(
            m.split("\n")[0].endswith(f"s3://{BUCKET}/s3run/results/{period}") for m in months
        )
    # the run's summary reads each month's metadata back from storage
    summary = on_s3["messages"][-1]
    assert summary.startswith(":checkered_flag:")
    assert "• 2022-01: ok, 6 scenes" in summary and "• 2022-02: ok, 6 scenes" in summary


def test_on_s3_a_second_run_does_nothing(on_s3):
    assert "Nothing to be done" in on_s3["again"].stdout + on_s3["again"].stderr


def test_on_s3_the_dag_is_checked_from_one_listing_not_file_by_file(on_s3, s3):
    """s2basemap.inventory: the run's objects are listed once; the S3 plugin alone asks
    three requests of each file (HEAD, HEAD of the bucket, LIST)."""
    listing = s3.client.list_objects_v2(Bucket=BUCKET, Prefix="s3run/")
    objects = listing["KeyCount"]
    assert objects > 60 and on_s3["again_requests"] < objects / 4, on_s3["again_requests"]


def test_on_s3_a_changed_month_reruns_only_that_month(on_s3):
    jobs = on_s3["changed"]
    assert {j.get("period") for j in jobs} - {None} == {"2022-02"}
    # its scene rasters were temporary (deleted from storage once composited), so the
    # month's scenes are fetched again too
    assert {"fetch_scene", "composite_column", "period_metadata"} <= {j["rule"] for j in jobs}
    # and the series' Collection, which lists the month's new Item
    assert {j["rule"] for j in jobs if "period" not in j} == {"all", "series_collection"}


@pytest.fixture(scope="module")
def isolated(world, s3, tmp_path_factory):
    path = checkout(tmp_path_factory.mktemp("isolated"))
    jobs_root = tmp_path_factory.mktemp("loopback-jobs")
    env = s3.env | {"LOOPBACK_ROOT": str(jobs_root)}
    result = run(
        path,
        world_config(world),
        *storage_args(s3, "isolated"),
        *isolated_args(),
        env=env,
    )
    return {"path": path, "jobs": sorted(jobs_root.iterdir()), "result": result}


def test_jobs_that_share_nothing_give_the_local_runs_products(isolated, s3, reference):
    assert stored_products(s3.client, "isolated") == reference


def test_each_job_ran_in_a_directory_of_its_own(isolated):
    scripts = [(job / "job.sh").read_text() for job in isolated["jobs"]]
    submitted = Counter(json.loads(PROPERTIES.search(s)[1])["rule"] for s in scripts)
    output = isolated["result"].stdout + isolated["result"].stderr
    shown = Counter(re.findall(r"(?m)^(?:rule|checkpoint) (\w+):", output))
    # one directory per job, but for the one that reads the user's AOI (a local()
    # file): Snakemake runs such a job in the main process, where the file is
    assert shown - submitted == Counter({"prepare_aoi": 1}) and not submitted - shown
    assert sum(submitted.values()) > 10
    assert all("--deploy-sources" in script for script in scripts)
    assert all((job / "exit_code").read_text().strip() == "0" for job in isolated["jobs"])
    assert only_per_node_state(isolated["path"])


def test_mask_jobs_with_the_model_are_submitted_too(isolated, world, weights, s3):
    """The model's weights are not a mask job's input without a shared filesystem: a
    local() input would make Snakemake run every mask job in the main process."""
    config = world_config(world, weights_dir=weights["random"])
    planned = run(
        isolated["path"],
        config,
        "--dry-run",
        *storage_args(s3, "isolated"),
        *isolated_args(),
        env=s3.env,
    )
    masks = re.findall(r"(?m)^(local)?rule mask_scene:", planned.stdout)
    # the first month's six masks rerun (new params); the second's wait behind its gate
    assert len(masks) == 6 and not any(masks)


def test_a_job_that_reads_an_undeclared_file_fails_without_a_shared_filesystem(
    world, s3, tmp_path_factory
):
    """The search reads the AOI where the layout puts it instead of its declared input:
    on one filesystem that goes unnoticed; in a job of its own, it fails."""
    path = checkout(tmp_path_factory.mktemp("undeclared"))
    script = path / "workflow" / "scripts" / "search.py"
    script.write_text(
        script.read_text().replace(
            "with job(snakemake) as j:\n",
            "with job(snakemake) as j:\n    open(j.layout.aoi()).close()  # undeclared\n",
        )
    )
    subprocess.run(["git", "add", "-A"], cwd=path, check=True)
    config = world_config(world, months=["2022-01"])
    run(path, config, "--until", "search")  # shared: passes

    jobs_root = tmp_path_factory.mktemp("undeclared-jobs")
    env = s3.env | {"LOOPBACK_ROOT": str(jobs_root)}
    failed = run(
        path,
        config,
        "--until",
        "search",
        *storage_args(s3, "undeclared"),
        *isolated_args(),
        check=False,
        env=env,
    )
    assert failed.returncode != 0
    assert "Error in rule search" in failed.stdout + failed.stderr
    # the job's one line names the file it missed
    said = [(job / "job.out").read_text() for job in jobs_root.iterdir()]
    assert any("No such file or directory: 'work/aoi.json'" in text for text in said)
