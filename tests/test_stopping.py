"""Snakemake's SIGTERM handler, and the workaround that keeps a stopped run from hanging."""

from __future__ import annotations

import subprocess
import sys

import pytest

# The scheduling loop's situation, reproduced exactly: the main thread holds the
# scheduler's lock when SIGTERM arrives, and the handler runs on that thread.
SCHEDULER_HOLDING_ITS_LOCK = """
import os, signal, sys, threading
from snakemake.scheduling.job_scheduler import JobScheduler
if sys.argv[1] == "workaround":
    from s2basemap.stopping import install_sigterm_workaround
    assert install_sigterm_workaround()
scheduler = JobScheduler.__new__(JobScheduler)  # the attributes the handler touches
scheduler._lock = threading.Lock()
scheduler._open_jobs = threading.Semaphore(0)
scheduler._user_kill = None
signal.signal(signal.SIGTERM, scheduler.exit_gracefully)
with scheduler._lock:
    print("holding", flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    print("handled", flush=True)
scheduler._open_jobs.acquire()  # the loop wakes up to the stop
print(scheduler._user_kill, flush=True)
"""


def start_scheduler(handler: str) -> subprocess.Popen:
    """The scene above with `handler`, once it holds the lock (imports take their time)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER_HOLDING_ITS_LOCK, handler],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout.readline() == "holding\n", proc.stderr.read()
    return proc


def test_snakemakes_own_handler_deadlocks_when_sigterm_meets_the_held_lock():
    # A deadlock, not slowness: past the lock, the handler would take microseconds. If
    # this starts to fail, Snakemake has fixed it and s2basemap.stopping can go.
    proc = start_scheduler("snakemake")
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=5)
    finally:
        proc.kill()
        proc.wait()
    assert proc.stdout.read() == ""  # never got past the handler


def test_the_workaround_stops_the_scheduler_gracefully_instead():
    proc = start_scheduler("workaround")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert out.split() == ["handled", "graceful"]


def test_installing_twice_wraps_the_handler_once(monkeypatch):
    from snakemake.scheduling.job_scheduler import JobScheduler

    from s2basemap.stopping import install_sigterm_workaround

    # restored after the test: other tests' in-process Snakemake keeps its own handler
    monkeypatch.setattr(JobScheduler, "exit_gracefully", JobScheduler.exit_gracefully)
    assert install_sigterm_workaround() and install_sigterm_workaround()
    wrapper = JobScheduler.exit_gracefully
    install_sigterm_workaround()
    assert JobScheduler.exit_gracefully is wrapper
