"""Snakemake's locks left by a dead run are removed; a live run's and another host's stay.

Each actor is a real process that claims the directory as a run's main process does,
and "Snakemake's locks" are files in .snakemake/locks as Snakemake writes them; runs
die by SIGKILL, as on a reclaimed box.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from s2basemap.runlock import RUN_RECORD, SNAKEMAKE_LOCKS

# claims the directory, takes Snakemake's locks, says so, then holds them (or starts a
# child that outlives it, as a job would) until killed
ACTOR = """
import json, subprocess, sys, time
from pathlib import Path
from s2basemap.runlock import claim, SNAKEMAKE_LOCKS
workdir, mode = Path(sys.argv[1]), sys.argv[2]
found = claim(workdir)
if mode == "hold":
    (workdir / SNAKEMAKE_LOCKS).mkdir(parents=True, exist_ok=True)
    for kind in ("input", "output"):
        (workdir / SNAKEMAKE_LOCKS / f"0.{kind}.lock").write_text(f"results/{kind}.tif\\n")
child = subprocess.Popen(["sleep", "600"]) if mode == "hold" and len(sys.argv) > 3 else None
print(json.dumps({"held": found.held, "message": found.message,
                  "child": child.pid if child else None}), flush=True)
if mode == "hold":
    time.sleep(600)
"""


def start(workdir: Path, mode: str, *extra: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen(
        [sys.executable, "-c", ACTOR, str(workdir), mode, *extra],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, json.loads(proc.stdout.readline())


def claim_once(workdir: Path) -> dict:
    proc, found = start(workdir, "once")
    proc.wait(timeout=60)
    return found


def locks(workdir: Path) -> list[str]:
    return sorted(p.name for p in (workdir / SNAKEMAKE_LOCKS).glob("*.lock"))


def record(workdir: Path) -> dict:
    return json.loads((workdir / RUN_RECORD).read_text())


@pytest.fixture
def killed_run(tmp_path):
    """A run that took Snakemake's locks and was SIGKILLed, with a job that outlives it."""
    proc, found = start(tmp_path, "hold", "with-a-job")
    assert found["held"] and found["message"] is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    yield tmp_path, proc.pid
    os.kill(found["child"], signal.SIGKILL)


def test_a_fresh_directory_is_claimed_without_a_word(tmp_path):
    found = claim_once(tmp_path)
    assert found == {"held": True, "message": None, "child": None}
    assert record(tmp_path)["host"] == socket.gethostname()


def test_the_locks_of_a_killed_run_are_removed_with_one_line(killed_run):
    workdir, dead = killed_run
    assert locks(workdir) == ["0.input.lock", "0.output.lock"]
    found = claim_once(workdir)
    assert found["held"]
    # the job still running does not keep the run's lock: descriptors are not inherited
    assert found["message"].startswith(
        f"removed the stale locks of a run that is gone (pid {dead} on {socket.gethostname()}"
    )
    assert locks(workdir) == []
    assert record(workdir)["pid"] != dead


def test_a_live_run_keeps_its_locks(tmp_path):
    live, _ = start(tmp_path, "hold")
    try:
        second = claim_once(tmp_path)
        assert not second["held"]
        assert second["message"].startswith(
            f"this directory is locked by a live run (pid {live.pid} on {socket.gethostname()}"
        )
        assert locks(tmp_path) == ["0.input.lock", "0.output.lock"]
        assert record(tmp_path)["pid"] == live.pid
    finally:
        live.kill()
        live.wait()


def test_locks_taken_on_another_host_are_left_alone(killed_run):
    workdir, _ = killed_run
    elsewhere = record(workdir) | {"host": "login2.cluster"}
    (workdir / RUN_RECORD).write_text(json.dumps(elsewhere))
    found = claim_once(workdir)
    assert found["held"]
    assert "taken by a run on login2.cluster" in found["message"]
    assert "snakemake --unlock" in found["message"]
    assert locks(workdir) == ["0.input.lock", "0.output.lock"]
    assert record(workdir) == elsewhere
