"""Faults and interruptions never cost data or give a silently wrong mosaic.

A world of this module's own, whose HTTP server injects faults: HTTP 500/503,
connection resets, stalls past the timeout and truncated bodies. Which request
gets which fault is fixed by request counts, so a busy machine sees the same
faults as an idle one; the runs' HTTP timeout is generous so that only the
injected stalls ever reach it.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import SNAKEFILE, run_snakemake, world_config
from testworld import served_world
from testworld.build import FILES
from testworld.servers import FAULT_KINDS, WebhookReceiver

MONTHS = ["2022-01", "2022-02"]
PRODUCTS = [f"results/2022-01/S2_RGBNIR_2022_01_01_to_2022_01_31{s}" for s in (".tif", "_count.tif")] + \
           [f"results/2022-02/S2_RGBNIR_2022_02_01_to_2022_02_28{s}" for s in (".tif", "_count.tif")]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    with served_world(tmp_path_factory.mktemp("faulty-world")) as (world, http, _, _):
        yield world, http


def config_for(world, **overrides):
    return world_config(world, months=MONTHS, fetch={"retries": 3, "backoff_seconds": 0.1,
                                                     "timeout_seconds": 20}, **overrides)


def fault_schedule(world) -> dict[tuple[str, int], str]:
    """Ten of the band files the months fetch get one fault each: every kind once on the file's
    first GET (the header) and once on its second (pixels). Every third file is taken, so a
    scene gets at most two faults, and each costs at most one of the fetch's four attempts."""
    paths = ["/" + scene.path(band).relative_to(world.root).as_posix()
             for month in MONTHS for scene in world.newest(month) for band in sorted(FILES)]
    return {(path, i % 2): FAULT_KINDS[i % len(FAULT_KINDS)] for i, path in enumerate(paths[::3][:10])}


def digests(root: Path, names) -> dict[str, str]:
    """sha256 per file: compared instead of the bytes, whose diff pytest would take ages to print."""
    return {name: hashlib.sha256((root / name).read_bytes()).hexdigest() for name in names}


@pytest.fixture(scope="module")
def baseline(faulty, tmp_path_factory):
    world, http = faulty
    http.schedule_faults({})
    workdir = tmp_path_factory.mktemp("baseline")
    run_snakemake(workdir, config_for(world))
    return digests(workdir, PRODUCTS)


def test_network_faults_leave_the_mosaic_byte_identical(faulty, baseline, tmp_path):
    world, http = faulty
    http.reset_counts()
    schedule = fault_schedule(world)
    http.schedule_faults(schedule)
    try:
        run_snakemake(tmp_path, config_for(world))
    finally:
        http.schedule_faults({})
    print(f"faults injected: {dict(http.faults)} over {sum(http.requests.values())} served requests")
    assert sum(http.faults.values()) == len(schedule)  # every scheduled fault happened
    assert set(http.faults) == set(FAULT_KINDS)
    assert digests(tmp_path, PRODUCTS) == baseline
    for month in MONTHS:
        metadata = json.loads((tmp_path / "results" / month / "metadata.json").read_text())
        assert all("duplicate" in e["reason"] for e in metadata["left_out"])


def test_persistent_faults_leave_the_scene_out_and_say_so(faulty, tmp_path):
    world, http = faulty
    victim = world.scene("S2A_16SBU_20220214_0_L2A")
    http.always_fail = {"/" + victim.path("red").relative_to(world.root).as_posix()}
    hook = WebhookReceiver().start()
    try:
        config = config_for(world, notify={"webhook_env": "S2B_TEST_WEBHOOK"})
        run_snakemake(tmp_path, config, env={"S2B_TEST_WEBHOOK": hook.url})
    finally:
        http.always_fail = set()
        hook.stop()
    metadata = json.loads((tmp_path / "results" / "2022-02" / "metadata.json").read_text())
    left_out = {e["id"]: e["reason"] for e in metadata["left_out"]}
    assert victim.id in left_out and "failed: unreadable after 4 attempts" in left_out[victim.id]
    assert "B04.tif" in left_out[victim.id] and "503" in left_out[victim.id]
    assert victim.id not in {s["id"] for s in metadata["scenes"]}
    message = next(t for t in hook.texts if t.startswith(":white_check_mark: 2022-02"))
    assert f"{victim.id}: failed: unreadable" in message
    # the scene's raster is an explicit, empty placeholder, never a partial image
    record = json.loads((tmp_path / "work/2022-02/scenes" / f"{victim.id}.json").read_text())
    assert record["status"] == "failed"
    stats = json.loads((tmp_path / "work/2022-02/masks" / f"{victim.id}.json").read_text())
    assert stats["status"] == "skipped"


STAGES = {"fetch": "work/logs/fetch", "mask": "work/logs/mask", "composite": "work/logs/composite",
          "assemble": "work/logs/assemble"}


def kill_when_started(workdir: Path, config: dict, stage: str, timeout: float = 300) -> None:
    """Run the workflow and SIGKILL its whole process group as soon as a `stage` job starts."""
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    proc = subprocess.Popen(
        [sys.executable, "-m", "snakemake", "--snakefile", str(SNAKEFILE), "--directory", str(workdir),
         "--configfile", str(workdir / "config.yaml"), "--cores", "2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    logs = workdir / STAGES[stage]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if logs.exists() and any(logs.rglob("*.log")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before any {stage} job started"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.mark.parametrize("stage", list(STAGES))
def test_killed_run_resumes_to_identical_outputs(faulty, baseline, tmp_path, stage):
    world, http = faulty
    http.schedule_faults({})
    config = config_for(world)
    kill_when_started(tmp_path, config, stage)
    finished = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/scenes/*.json")}
    run_snakemake(tmp_path, config, "--unlock")
    run_snakemake(tmp_path, config)
    assert digests(tmp_path, PRODUCTS) == baseline
    # scenes fetched before the kill were not fetched again
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was fetched again"
    assert not list(tmp_path.rglob("*.part"))  # no half-written file survived
