"""A run stopped at any moment loses nothing, and the same command finishes it.

SLURM at a job's time limit and a reclaimed spot box send SIGTERM to every process of
the run. Here the test world, masked by OmniCloudMask's shared process and uploaded to
S3 on 127.0.0.1, is stopped so five times in a row: during fetches, masks (the shared
process at work on a scene), composites, product assembly and an upload; then once
more by SIGKILL of everything during an upload, as when the box is lost. Each stop is
triggered by a file appearing (a stage's job log, the shared process's log line) or by
a request (an upload's PUT held by the S3 server), never by a sleep. Each run must end
within 60 s of the signal. The last, unstopped run must leave the products, and the
uploaded objects, of a run that was never stopped.

A disk that fills up is met the same way: a tmpfs of its own where each kind of file
goes, filled to its last byte.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from conftest import (
    fill,
    fingerprint,
    products,
    run_snakemake,
    s3_endpoint,
    small_disk,
    start_snakemake,
    world_config,
)
from s2basemap.layout import Layout
from testworld.servers import WebhookReceiver

MONTHS = ["2022-01", "2022-02"]
PREFIX = "arkansas/monthly"  # tests/configs/operated.yaml
STOP_WITHIN_SECONDS = 60
MASK_SERVER_LOG = "work/logs/mask_server.log"


@pytest.fixture(scope="module")
def services():
    hook = WebhookReceiver().start()
    with s3_endpoint(buckets=["clean", "stopped", "full"]) as (s3_server, s3_env, s3):
        yield s3_server, s3_env | {"S2B_TEST_WEBHOOK": hook.url}, s3
    hook.stop()


def config_for(world, weights, s3_url: str, bucket: str) -> dict:
    config = world_config(
        world,
        weights["random"],
        scenario="operated",
        values={"s3_url": s3_url, "bucket": bucket},
        months=MONTHS,
    )
    # far longer than a stop may take: the shared process must leave because its jobs
    # went away, not because it was idle
    config["mask"]["ocm"]["server_idle_seconds"] = 600
    return config


def uploaded(s3, bucket: str, exact: bool = False) -> dict[str, str]:
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]
    return {
        name: fingerprint(name, s3.get_object(Bucket=bucket, Key=key)["Body"].read(), exact)
        for key in keys
        if (name := key.removeprefix(f"{PREFIX}/"))
    }


def server_pids(workdir: Path) -> list[int]:
    log = workdir / MASK_SERVER_LOG
    text = log.read_text() if log.exists() else ""
    return [int(p) for p in re.findall(r"listening on .* \(pid (\d+)\)", text)]


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has exited; only its parent has not reaped it yet


class Runtime:
    """A socket directory of one workdir's own: its runs get a shared process apart from
    other runs' (the path is short: socket paths are limited)."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="s2i", dir="/tmp")

    def close(self, workdir: Path) -> None:
        for pid in server_pids(workdir):  # a clean run's server waits out its idle time
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.path, ignore_errors=True)


def job_log_appears(stage: str):
    """A trigger: a log of a `stage` job written by this run."""

    def arm(workdir: Path):
        logs = workdir / "work" / "logs" / stage
        before = {p: p.stat().st_mtime_ns for p in logs.rglob("*.log")} if logs.exists() else {}
        return lambda: (
            logs.exists()
            and any(before.get(p) != p.stat().st_mtime_ns for p in logs.rglob("*.log"))
        )

    return arm


def shared_process_masking(workdir: Path):
    """A trigger: the shared process took a scene of this run (its log says "masking")."""
    log = workdir / MASK_SERVER_LOG

    def count() -> int:
        return log.read_text().count(" masking ") if log.exists() else 0

    before = count()
    return lambda: count() > before


@pytest.fixture(scope="module")
def clean(world, weights, services, tmp_path_factory):
    s3_server, env, s3 = services
    workdir = tmp_path_factory.mktemp("clean")
    runtime = Runtime()
    try:
        config = config_for(world, weights, s3_server.url, "clean")
        run_snakemake(workdir, config, env=env | {"S2BASEMAP_RUNTIME_DIR": runtime.path})
    finally:
        runtime.close(workdir)
    return products(workdir), uploaded(s3, "clean")


def stop(proc: subprocess.Popen, how: signal.Signals) -> float:
    """`how` to every process of the run at once; seconds until the run has ended.
    The run is frozen first, so that the signal meets the job that was just seen."""
    os.killpg(proc.pid, signal.SIGSTOP)
    sent = time.monotonic()
    os.killpg(proc.pid, how)
    with contextlib.suppress(ProcessLookupError):  # after SIGKILL, none may be left
        os.killpg(proc.pid, signal.SIGCONT)
    proc.wait(timeout=600)
    return time.monotonic() - sent


def run_until_stopped(workdir, config, env, trigger, how, output: Path) -> tuple[int, float]:
    """Start the run and stop it with `how` once `trigger()` holds: its exit code, and
    the seconds it took to end. Its output goes to `output`."""
    with open(output, "w") as out:
        proc = start_snakemake(workdir, config, env=env, output=out)
        while not trigger():
            assert proc.poll() is None, f"the run ended before the stop ({output.name})"
            time.sleep(0.01)
        took = stop(proc, how)
    return proc.returncode, took


def test_sigterm_at_every_stage_then_the_same_command_gives_identical_products_and_uploads(
    world, weights, services, clean, tmp_path
):
    s3_server, env, s3 = services
    clean_products, clean_uploads = clean
    workdir = tmp_path / "stopped"
    workdir.mkdir()
    config = config_for(world, weights, s3_server.url, "stopped")
    runtime = Runtime()
    env = env | {"S2BASEMAP_RUNTIME_DIR": runtime.path}
    held_put = None  # the trigger of an upload stop: the S3 server holds the next PUT
    stops = [  # (stage, its rule, the trigger, the signal)
        ("fetch", "fetch_scene", job_log_appears("fetch"), signal.SIGTERM),
        ("mask", "mask_scene", shared_process_masking, signal.SIGTERM),
        ("composite", "composite_column", job_log_appears("composite"), signal.SIGTERM),
        ("assemble", "assemble_mosaic", job_log_appears("assemble"), signal.SIGTERM),
        ("upload", "upload_period", held_put, signal.SIGTERM),
        # and the box lost during an upload: the next run finds the locks stale
        ("upload", "upload_period", held_put, signal.SIGKILL),
    ]
    try:
        for stage, rule, arm, how in stops:
            if arm is held_put:
                s3_server.hold_next_put("stopped")
                trigger = s3_server.held.is_set
            else:
                trigger = arm(workdir)
            output = workdir / f"run-stopped-at-{stage}-{how.name}.txt"
            code, took = run_until_stopped(workdir, config, env, trigger, how, output)
            s3_server.release()
            text = output.read_text()
            print(f"{how.name} at {stage}: exit {code}, {took:.1f} s after the signal")
            assert took < STOP_WITHIN_SECONDS, text
            if how == signal.SIGKILL:
                assert code == -signal.SIGKILL
                continue
            assert code != 0, text
            assert "Will exit after finishing currently running jobs" in text
            assert f"Error in rule {rule}:" in text  # the signal met a job of the stage
            assert not list((workdir / ".snakemake" / "locks").glob("*.lock")), text
            if stage == "mask":  # the shared process left once its job went away
                deadline = time.monotonic() - took + STOP_WITHIN_SECONDS
                while any(alive(pid) for pid in server_pids(workdir)):
                    assert time.monotonic() < deadline, "the shared mask process outlived the run"
                    time.sleep(0.1)
        finished = run_snakemake(workdir, config, env=env)
    finally:
        runtime.close(workdir)
    # SIGTERM released Snakemake's locks; the lost box's were found stale
    stale = [line for line in finished.stderr.splitlines() if "stale locks" in line]
    assert len(stale) == 1 and stale[0].startswith("s2basemap: removed the stale locks")
    assert products(workdir) == clean_products
    assert uploaded(s3, "stopped") == clean_uploads
    assert uploaded(s3, "stopped", exact=True) == products(workdir, exact=True)
    assert not list(workdir.rglob("*.part"))  # no half-written file survived


def test_a_full_disk_at_each_kind_of_write_fails_with_one_line_then_the_rerun_is_identical(
    world, weights, services, clean, tmp_path
):
    """A disk fills at a scene raster, a mask, a column composite and the mosaic COG in
    turn: each a tmpfs of its own, mounted where those files go, filled to ENOSPC.

    Each disk is mounted for its own run alone, so that the one small disk a run can
    find full is the one filled for it, whatever order its jobs take. Disks kept mounted,
    freed, for the later runs were found full in one of them on a busy machine: each
    run goes on (--keep-going) with every job that no failure holds back, the next
    month's included once this month's tiles let its fetches start, in an order and
    with files held at once that the machine's load decides."""
    s3_server, env, s3 = services
    clean_products, clean_uploads = clean
    workdir = tmp_path / "full"
    config = config_for(world, weights, s3_server.url, "full")
    layout = Layout("work", "results", "S2_RGBNIR")  # as tests/configs/world.yaml leaves them
    month = MONTHS[0]
    folders = {
        "scene raster": Path(layout.scene_raster(month)).parent,
        "mask": Path(layout.mask(month)).parent,
        "column composite": Path(layout.column(month)).parent,
        "mosaic COG": Path(layout.products(month, "2022_01_01_to_2022_01_31")["mosaic"]).parent,
    }
    runtime = Runtime()
    env = env | {"S2BASEMAP_RUNTIME_DIR": runtime.path}
    try:
        for what, folder in folders.items():
            with small_disk(workdir / folder, "32m") as disk:
                fill(disk)
                failed = run_snakemake(workdir, config, "--keep-going", check=False, env=env)
                # nothing was left there, not even in part; nor taken as done
                assert [p.name for p in disk.iterdir()] == ["filler"]
            # unmounted: the files written there from now on go to the disk beneath
            full = [
                line for line in failed.stderr.splitlines() if f"the disk at {disk} is full" in line
            ]
            print(f"full at the {what}: {full[:1]}")
            assert failed.returncode != 0
            assert full, [line for line in failed.stderr.splitlines() if "ERROR" in line]
            assert set(re.findall(r"the disk at (\S+) is full", failed.stderr)) == {str(disk)}
            one_line = re.compile(
                rf"ERROR (DiskFullError: )?the disk at {re.escape(str(disk))} is full "
                rf"\(\d+ k?B free of 33\.6 MB\) writing \S+: free space there, then run "
                rf"the same command again \(traceback in \S+\)"
            )
            assert all(one_line.fullmatch(line) for line in full), full
        run_snakemake(workdir, config, env=env)
    finally:
        runtime.close(workdir)
    assert products(workdir) == clean_products
    assert uploaded(s3, "full") == clean_uploads
