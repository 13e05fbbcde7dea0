"""Snakemake's locks left by a run that is gone, recognised and removed.

Snakemake locks its working directory (`.snakemake/locks`) and removes the locks when
it exits, even on SIGTERM. A box reclaimed without warning (SIGKILL of everything, a
power loss) leaves them, and the same command then stops with LockException until the
user knows to run `snakemake --unlock`. So each run's main process holds an flock on a
file of its own for its whole life. The kernel drops an flock when its process dies,
however it dies: a run that gets it knows that no run of this directory is alive on
this machine, so Snakemake's locks, if any, are left over from a dead one. The file
also names the last run that held it (host, pid, start), for the messages, and so that
locks taken on another host of a shared filesystem, where an flock may not reach, are
left alone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from s2basemap.atomic import atomic_write_json

SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"  # Snakemake's own layout, in the workdir
RUN_LOCK = Path(".snakemake") / "s2basemap" / "run.lock"
RUN_RECORD = Path(".snakemake") / "s2basemap" / "run.json"

_held: dict[Path, int] = {}  # workdir -> descriptor of its flock, kept for the process's life


@dataclass(frozen=True)
class Claim:
    """What a run found: whether it holds the directory's run lock, and what it did."""

    held: bool
    message: str | None = None  # one line for the user, when there is something to say


def claim(workdir: str | Path = ".") -> Claim:
    """Take this directory's run lock for the life of the process and, holding it, remove
    Snakemake's locks that a run now gone left behind on this host."""
    workdir = Path(workdir).resolve()
    previous = _read_record(workdir)
    locks = sorted((workdir / SNAKEMAKE_LOCKS).glob("*.lock"))
    state = _lock(workdir)
    if state != "held":
        if not locks:
            return Claim(False)
        if state == "busy":
            return Claim(False, f"this directory is locked by a live run ({_describe(previous)})")
        return Claim(False, f"cannot tell whether this directory's locks are stale: {state}")
    message = None
    if locks:
        if previous is None or previous.get("host") != socket.gethostname():
            # taken elsewhere (or before this check existed): its run may be alive there
            return Claim(True, f"left the locks of this directory alone: {_owner(previous)}")
        for lock in locks:
            lock.unlink(missing_ok=True)
        message = f"removed the stale locks of a run that is gone ({_describe(previous)})"
    atomic_write_json(workdir / RUN_RECORD, _this_run())
    return Claim(True, message)


def _lock(workdir: Path) -> str:
    """The directory's flock, non-blocking: "held", "busy" (a live run has it) or why it
    cannot be had. Kept (never closed) so that it lasts as long as the process; a second
    claim in the same process (the API run twice) keeps the first."""
    if workdir in _held:
        return "held"
    path = workdir / RUN_LOCK
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)  # not inherited by jobs (PEP 446)
    except OSError as exc:
        return f"{path}: {exc.strerror}"
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return "busy"
    except OSError as exc:  # no flock on this filesystem: Snakemake's locks decide alone
        os.close(fd)
        return f"no flock on {path.parent} ({exc.strerror})"
    _held[workdir] = fd
    return "held"


def _this_run() -> dict:
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _read_record(workdir: Path) -> dict | None:
    try:
        return json.loads((workdir / RUN_RECORD).read_text())
    except (OSError, ValueError):
        return None


def _describe(record: dict | None) -> str:
    if not record:
        return "run unknown"
    return f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}"


def _owner(record: dict | None) -> str:
    """Why locks not known to be stale are kept, and what to do if their run is gone."""
    where = f"taken by a run on {record.get('host')}" if record else "taken by an unknown run"
    return f"{where}; if it is gone, run `snakemake --unlock` once"
