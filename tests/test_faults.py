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
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import run_snakemake, start_snakemake, world_config
from testworld import served_world
from testworld.build import FILES
from testworld.servers import FAULT_KINDS, WebhookReceiver

MONTHS = ["2022-01", "2022-02"]
PRODUCTS = [
    f"results/2022-01/S2_RGBNIR_2022_01_01_to_2022_01_31{s}" for s in (".tif", "_count.tif")
] + [f"results/2022-02/S2_RGBNIR_2022_02_01_to_2022_02_28{s}" for s in (".tif", "_count.tif")]


@pytest.fixture(scope="module")
def faulty(tmp_path_factory):
    with served_world(tmp_path_factory.mktemp("faulty-world")) as (world, http, _, _):
        yield world, http


def config_for(world, fetch=None, **overrides):
    """The faults scenario (tests/configs/faults.yaml); `fetch` adds fetch settings."""
    config = world_config(world, scenario="faults", months=MONTHS, **overrides)
    config["fetch"] |= fetch or {}
    return config


def fault_schedule(world) -> dict[tuple[str, int], str]:
    """Ten of the band files the months fetch get one fault each: every kind once on the file's
    first GET (the header) and once on its second (pixels). Every third file is taken, so a
    scene gets at most two faults, and each costs at most one of the fetch's four attempts."""
    paths = [
        "/" + scene.path(band).relative_to(world.root).as_posix()
        for month in MONTHS
        for scene in world.newest(month)
        for band in sorted(FILES)
    ]
    return {
        (path, i % 2): FAULT_KINDS[i % len(FAULT_KINDS)] for i, path in enumerate(paths[::3][:10])
    }


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
    print(
        f"faults injected: {dict(http.faults)} over {sum(http.requests.values())} served requests"
    )
    assert sum(http.faults.values()) == len(schedule)  # every scheduled fault happened
    assert set(http.faults) == set(FAULT_KINDS)
    assert digests(tmp_path, PRODUCTS) == baseline
    for month in MONTHS:
        metadata = json.loads((tmp_path / "results" / month / "metadata.json").read_text())
        assert all("duplicate" in e["reason"] for e in metadata["left_out"])


def band_paths(world, scenes, bands=FILES) -> set[str]:
    return {
        "/" + scene.path(band).relative_to(world.root).as_posix()
        for scene in scenes
        for band in bands
    }


def products_of(workdir: Path, month: str) -> list[Path]:
    return (
        sorted((workdir / "results" / month).glob("*"))
        if (workdir / "results" / month).exists()
        else []
    )


def test_an_outage_for_the_whole_run_publishes_nothing_and_the_next_run_completes(
    faulty, baseline, tmp_path
):
    world, http = faulty
    http.schedule_faults({})
    http.go_down()
    try:
        result = run_snakemake(tmp_path, config_for(world), check=False)
    finally:
        http.come_up()
    assert result.returncode != 0
    assert (
        "the imagery source did not answer" in result.stderr
        and "Run again once it answers" in result.stderr
    )
    # it stopped at the plan's size requests: nothing fetched, nothing published
    assert not list((tmp_path / "work").glob("*/scenes/*.json"))
    assert all(products_of(tmp_path, month) == [] for month in MONTHS)
    run_snakemake(tmp_path, config_for(world))
    assert digests(tmp_path, PRODUCTS) == baseline


def test_an_outage_mid_run_stops_early_and_the_next_run_fetches_just_the_failed_scenes(
    faulty, baseline, tmp_path
):
    world, http = faulty
    http.schedule_faults({})
    scenes = [scene for month in MONTHS for scene in world.newest(month)]
    hook = WebhookReceiver().start()
    # both months' fetches may run (no wait for the first month's tiles), so that the
    # outage meets more scenes than the watch lets spend their retries
    config = config_for(
        world,
        notify={"webhook_env": "S2B_TEST_WEBHOOK"},
        fetch={"outage_after": 3},
        storage={"months_in_flight": None},
    )
    # down once the plan's size requests (a HEAD per file) and about three scenes' reads are served
    http.go_down(after=len(scenes) * len(FILES) + 90)
    try:
        result = run_snakemake(tmp_path, config, check=False, env={"S2B_TEST_WEBHOOK": hook.url})
    finally:
        http.come_up()
        hook.stop()
    assert result.returncode != 0
    failed = {}
    for path in (tmp_path / "work").glob("*/failed/*.json"):
        failed[path.stem] = json.loads(path.read_text())
    assert failed and all(entry["kind"] == "transient" for entry in failed.values())
    # the watch stopped the rest: at most outage_after scenes (and those in flight on the two
    # cores) spent their retries, and the others gave up without a request
    spent = [e for e in failed.values() if e["reason"].startswith("unreadable after 4 attempts")]
    gave_up = [
        e
        for e in failed.values()
        if re.match(r"gave up: the imagery source looks down: [345] scenes in a row", e["reason"])
    ]
    assert len(spent) <= 3 + 2 and gave_up and len(spent) + len(gave_up) == len(failed)
    assert all(e["attempts"] == 0 for e in gave_up)
    waiting = sorted(
        {path.parent.parent.name for path in (tmp_path / "work").glob("*/failed/*.json")}
    )
    for month in waiting:
        total = len(world.newest(month))
        n = sum(1 for path in (tmp_path / "work" / month / "failed").glob("*.json"))
        line = next(
            l for l in result.stderr.splitlines() if l.startswith(f"ERROR {month} not published")
        )
        assert f"{n} of {total} scenes could not be read ({n} for network reasons" in line
        assert line.endswith(f"--configfile {tmp_path / 'config.yaml'} --cores 2")
        assert not (tmp_path / "results" / month / "metadata.json").exists()
        assert any(t.startswith(f":x: {month} not published") for t in hook.texts)
    assert not any(
        "rule fetch_scene failed" in t for t in hook.texts
    )  # told per month, not per scene
    fetched = {p: p.stat().st_mtime_ns for p in (tmp_path / "work").glob("*/scenes/*.json")}
    http.reset_counts()
    run_snakemake(tmp_path, config)  # the same command, no --forcerun
    assert digests(tmp_path, PRODUCTS) == baseline
    assert set(http.requests) <= band_paths(world, [world.scene(i) for i in failed])
    assert {p.split("/")[-2] for p in http.requests} == {
        world.scene(i).path("red").parent.name for i in failed
    }
    for path, mtime in fetched.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was fetched again"
    assert not list((tmp_path / "work").glob("*/failed/*.json"))


def test_a_permanently_broken_scene_is_left_out_of_a_published_month(faulty, tmp_path):
    world, http = faulty
    http.schedule_faults({})
    victim = world.scene("S2A_16SBU_20220214_0_L2A")
    hidden = victim.path("red").with_suffix(".hidden")
    victim.path("red").rename(hidden)  # the server answers 404
    hook = WebhookReceiver().start()
    try:
        config = config_for(
            world, notify={"webhook_env": "S2B_TEST_WEBHOOK"}, fetch={"max_left_out_fraction": 0.2}
        )
        run_snakemake(tmp_path, config, env={"S2B_TEST_WEBHOOK": hook.url})
    finally:
        hidden.rename(victim.path("red"))
        hook.stop()
    metadata = json.loads((tmp_path / "results" / "2022-02" / "metadata.json").read_text())
    left_out = {e["id"]: e["reason"] for e in metadata["left_out"]}
    assert left_out[victim.id].startswith("failed: unreadable (permanent) after 1 attempt: red (")
    assert "B04.tif" in left_out[victim.id] and "HTTP response code: 404" in left_out[victim.id]
    assert victim.id not in {s["id"] for s in metadata["scenes"]}
    message = next(t for t in hook.texts if t.startswith(":white_check_mark: 2022-02"))
    assert f"{victim.id}: failed: unreadable (permanent)" in message
    # the scene's raster is an explicit, empty placeholder, never a partial image
    record = json.loads((tmp_path / "work/2022-02/scenes" / f"{victim.id}.json").read_text())
    assert record["status"] == "failed" and record["kind"] == "permanent"
    stats = json.loads((tmp_path / "work/2022-02/masks" / f"{victim.id}.json").read_text())
    assert stats["status"] == "skipped"


def test_more_broken_scenes_than_the_threshold_fail_the_month_and_name_them(
    faulty, baseline, tmp_path
):
    world, http = faulty
    http.schedule_faults({})
    victims = [world.scene(i) for i in ("S2A_16SBU_20220214_0_L2A", "S2B_15SYU_20220204_0_L2A")]
    for victim in victims:  # not a TIFF: the server answers 200 with a web page
        victim.path("nir").rename(victim.path("nir").with_suffix(".good"))
        victim.path("nir").write_text("<html>maintenance</html>" * 40)
    try:
        result = run_snakemake(tmp_path, config_for(world), check=False)
    finally:
        for victim in victims:
            victim.path("nir").with_suffix(".good").replace(victim.path("nir"))
    assert result.returncode != 0
    line = next(l for l in result.stderr.splitlines() if "2022-02 not published" in l)
    assert (
        "2 of 6 scenes could not be read (33% of the month, more than fetch.max_left_out_fraction 0.1"
        in line
    )
    assert all(
        f"{v.id}: unreadable (permanent)" in line and "not recognized" in line for v in victims
    )
    assert products_of(tmp_path, "2022-02") == []
    assert (tmp_path / "results/2022-01/metadata.json").exists()  # the other month is published
    # the series' Collection is written once every month of the run is published
    assert not (tmp_path / "results/collection.json").exists()
    # the files are mended: the next run fetches those two again and publishes the month. The
    # month's columns ran with them left out and swept their scene rasters, so the columns
    # they touch are composited again from refetched rasters; the published month is untouched.
    assert sorted(p.stem for p in (tmp_path / "work/2022-02/failed").glob("*.json")) == sorted(
        v.id for v in victims
    )
    assert not any((tmp_path / "work/2022-02/scenes" / f"{v.id}.json").exists() for v in victims)
    published = {p: p.stat().st_mtime_ns for p in (tmp_path / "work/2022-01").rglob("*.json")}
    http.reset_counts()
    run_snakemake(tmp_path, config_for(world))
    assert digests(tmp_path, PRODUCTS) == baseline
    assert band_paths(world, victims) <= set(http.requests)
    assert set(http.requests) <= band_paths(world, world.newest("2022-02"))
    assert all(path.stat().st_mtime_ns == mtime for path, mtime in published.items())
    assert not list((tmp_path / "work/2022-02/failed").glob("*.json"))
    collection = json.loads((tmp_path / "results/collection.json").read_text())
    assert item_links(collection) == ["./2022-01/item.json", "./2022-02/item.json"]
    a_failed_redo_keeps_the_month_and_the_catalog(world, tmp_path, victims)


def item_links(collection: dict) -> list[str]:
    return [link["href"] for link in collection["links"] if link["rel"] == "item"]


def a_failed_redo_keeps_the_month_and_the_catalog(world, workdir: Path, victims) -> None:
    """2022-02 redone with another percentile: while its scenes are unreadable the redo
    fails and its Item, products and the Collection stay as they were; mended, the redo
    publishes and both the Item and the Collection say so."""
    redo = config_for(world, overrides={"2022-02": {"composite": {"percentile": 40}}})
    kept = [
        "results/collection.json",
        *(str(p.relative_to(workdir)) for p in products_of(workdir, "2022-02")),
    ]
    before = digests(workdir, kept)
    for victim in victims:
        victim.path("nir").rename(victim.path("nir").with_suffix(".good"))
        victim.path("nir").write_text("<html>maintenance</html>" * 40)
    try:
        failed = run_snakemake(workdir, redo, check=False)
    finally:
        for victim in victims:
            victim.path("nir").with_suffix(".good").replace(victim.path("nir"))
    assert failed.returncode != 0 and "2022-02 not published" in failed.stderr
    assert digests(workdir, kept) == before
    run_snakemake(workdir, redo)
    item = json.loads((workdir / "results/2022-02/item.json").read_text())
    assert item["properties"]["title"] == "2022-02: 40th percentile of each band"
    collection = json.loads((workdir / "results/collection.json").read_text())
    assert item_links(collection) == ["./2022-01/item.json", "./2022-02/item.json"]
    assert collection["updated"] == item["properties"]["created"]
    collection_now = digests(workdir, ["results/collection.json"])["results/collection.json"]
    assert collection_now != before["results/collection.json"]


STAGES = {
    "fetch": "work/logs/fetch",
    "mask": "work/logs/mask",
    "composite": "work/logs/composite",
    "assemble": "work/logs/assemble",
}


def start_until(
    workdir: Path, config: dict, stage: str, timeout: float = 300, output=subprocess.DEVNULL
) -> subprocess.Popen:
    """Start the workflow in a session of its own; return once a `stage` job has started."""
    proc = start_snakemake(workdir, config, output=output)
    logs = workdir / STAGES[stage]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if logs.exists() and any(logs.rglob("*.log")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, f"the run ended before any {stage} job started"
    return proc


def kill_when_started(workdir: Path, config: dict, stage: str, output) -> int:
    """Run the workflow and SIGKILL its whole process group as soon as a `stage` job starts,
    as when a box is reclaimed without warning; the run's pid."""
    proc = start_until(workdir, config, stage, output=output)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.pid


def test_a_live_run_keeps_its_locks_and_a_second_run_stops_with_one_line(
    faulty, baseline, tmp_path
):
    world, http = faulty
    http.schedule_faults({})
    # the live run is paused while the others run, however long they take: a read it
    # has in flight then must not time out (a run-time setting, not a job's param)
    config = config_for(world, fetch={"timeout_seconds": 600})
    live = start_until(tmp_path, config, "fetch")
    os.killpg(live.pid, signal.SIGSTOP)  # alive and holding its locks, but not finishing
    try:
        second = run_snakemake(tmp_path, config, check=False)
        dry = run_snakemake(tmp_path, config, "--dry-run", check=False)
    finally:
        os.killpg(live.pid, signal.SIGCONT)
        live.wait(timeout=600)
    line = (
        f"s2basemap: this directory is locked by a live run (pid {live.pid} "
        f"on {socket.gethostname()}, started "
    )
    assert second.returncode != 0
    assert any(row.startswith(line) for row in second.stderr.splitlines())
    assert "Directory cannot be locked" in second.stderr
    assert dry.returncode == 0, dry.stderr  # a dry run beside a live run still works
    # the refused run took nothing from the live one, which finished as an undisturbed run
    assert live.returncode == 0
    assert digests(tmp_path, PRODUCTS) == baseline


def test_a_run_killed_at_each_stage_in_turn_resumes_to_identical_outputs(
    faulty, baseline, tmp_path
):
    """The same command, started again after each SIGKILL: killed as its first fetch,
    then mask, composite and assemble job starts, then left to finish. Each start finds
    the dead run's locks, recognises them as stale without --unlock, and goes on from
    what the dead runs finished."""
    world, http = faulty
    http.schedule_faults({})
    config = config_for(world)
    finished: dict[Path, int] = {}  # each scene record as first written
    dead = None
    for stage in STAGES:
        with open(tmp_path / f"{stage}.out", "w") as output:
            pid = kill_when_started(tmp_path, config, stage, output)
        if dead is not None:
            said_stale(dead, (tmp_path / f"{stage}.out").read_text())
        assert list((tmp_path / ".snakemake" / "locks").glob("*.lock")), "no lock left to test"
        for path in (tmp_path / "work").glob("*/scenes/*.json"):
            finished.setdefault(path, path.stat().st_mtime_ns)
        dead = pid
    resumed = run_snakemake(tmp_path, config)
    said_stale(dead, resumed.stderr)
    assert digests(tmp_path, PRODUCTS) == baseline
    # scenes fetched before a kill were not fetched again
    assert finished, "no scene was fetched before the kills"
    for path, mtime in finished.items():
        assert path.stat().st_mtime_ns == mtime, f"{path.name} was fetched again"
    assert not list(tmp_path.rglob("*.part"))  # no half-written file survived


def said_stale(dead: int, output: str) -> None:
    """The run said, once, that it removed the locks of the dead run `dead`."""
    stale = [line for line in output.splitlines() if "stale locks" in line]
    assert len(stale) == 1, output[-3000:]
    assert stale[0].startswith(
        f"s2basemap: removed the stale locks of a run that is gone (pid {dead} "
        f"on {socket.gethostname()}, started "
    )
