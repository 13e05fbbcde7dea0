"""A read that never returns ends its job: the wall-clock guard on every scene read.

rasterio 1.4.4's libcurl can deadlock inside a read, where GDAL's own timeouts never
fire (facts.md). Loopback tests never resolve a hostname, so they cannot meet that bug;
they can meet what it does. The test's HTTP server holds one range request open for
ever, chosen by its request count, and GDAL's timeouts are raised past the test, so
that only the guard can end the read.
"""

from __future__ import annotations

import json
import re
import threading
import time

import pytest

from conftest import products, run_snakemake, world_config
from s2basemap.stall import StallGuard, watched
from testworld import served_world

STALL_SECONDS = 8
MARGIN_SECONDS = 90  # the job's exit and the server noticing, on a busy machine
STALLED = "S2A_15SYU_20220214_0_L2A"  # one of 2022-02's scenes, with the offset in its pixels


def test_the_guard_hands_a_blocked_read_to_its_handler_once():
    released, calls = threading.Event(), []

    def on_stall(what, seconds):
        calls.append((what, seconds))
        released.set()  # a job's handler ends the process; this one frees the read

    started = time.monotonic()
    with StallGuard(0.5, on_stall), watched("red (http://example.com/B04.tif)"):
        assert released.wait(600)  # blocked until the guard fires
    assert len(calls) == 1 and calls[0][0] == "red (http://example.com/B04.tif)"
    assert calls[0][1] >= 0.5 and time.monotonic() - started >= 0.5
    with watched("outside any guard"):  # no guard: nothing watches, nothing fails
        pass


@pytest.fixture(scope="module")
def stall_world(tmp_path_factory):
    with served_world(tmp_path_factory.mktemp("stall-world")) as (world, http, _, _):
        http.stall_limit_seconds = 3600  # only the client ends a stall
        yield world, http


def config(world):
    return world_config(
        world,
        months=["2022-02"],
        # GDAL's own timeouts past the test: only the guard can end a stalled read
        fetch={"retries": 0, "timeout_seconds": 3600, "stall_seconds": STALL_SECONDS},
    )


def test_a_blocked_read_ends_its_job_and_the_same_command_then_finishes_the_month(
    stall_world, tmp_path
):
    world, http = stall_world
    clean = tmp_path / "clean"
    run_snakemake(clean, config(world))
    expected = products(clean)

    scene = world.scene(STALLED)
    red = "/" + scene.path("red").relative_to(world.root).as_posix()
    http.schedule_faults({(red, 1): "stall"})  # its second range request never answers
    try:
        stalled = tmp_path / "stalled"
        first = run_snakemake(stalled, config(world), check=False)
        output = first.stdout + first.stderr
        assert first.returncode != 0, output[-3000:]
        assert http.faults["stall"] == 1 and len(http.stalls) == 1
        path, began, ended, hung_up = http.stalls[0]
        assert path == red and hung_up  # the job went away; the server did not give up
        print(f"the stalled read ended after {ended - began:.1f} s")
        assert STALL_SECONDS - 1 <= ended - began <= STALL_SECONDS + MARGIN_SECONDS
        lines = [line for line in output.splitlines() if line.startswith(f"ERROR {STALLED}")]
        href = re.escape(world.url(scene.path("red")))
        log = re.escape(f"work/logs/fetch/2022-02/{STALLED}.log")
        assert len(lines) == 1, output[-3000:]
        said = re.fullmatch(
            rf"ERROR {STALLED}: the read of red \({href}\) made no progress for (\d+) s "
            rf"\(fetch.stall_seconds: {STALL_SECONDS}\); the job ends so that the scene is "
            rf"read again \(log: {log}\)",
            lines[0],
        )
        assert said and STALL_SECONDS <= int(said[1]) <= STALL_SECONDS + MARGIN_SECONDS, lines
        scenes = stalled / "work" / "2022-02" / "scenes"
        assert not list(scenes.glob(f"{STALLED}.*")) and not list(scenes.glob(f".{STALLED}*"))
        noted = json.loads(
            (stalled / "work" / "2022-02" / "failed" / f"{STALLED}.json").read_text()
        )
        assert noted["kind"] == "transient" and "made no progress" in noted["reason"]
        assert not (stalled / "results" / "2022-02").exists()

        again = run_snakemake(stalled, config(world))
        assert http.faults["stall"] == 1  # the scene was read again, and answered
        assert "fetch_scene" in again.stdout + again.stderr
    finally:
        http.schedule_faults({})
    assert products(stalled) == expected
    assert not (stalled / "work" / "2022-02" / "failed" / f"{STALLED}.json").exists()
