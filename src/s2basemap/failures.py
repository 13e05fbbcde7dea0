"""Why a scene could not be read, and whether its month may be published without it.

A *transient* failure is the network's or the server's, for now: connection
refused or reset, timeouts, HTTP 5xx and 429. The scene's fetch job fails, so
its month is not published, and the next run fetches exactly that scene again.
A *permanent* failure is the file's: HTTP 404/403/410, not a TIFF, or a file
shorter than its own tile index. The scene is left out with its reason, and its
month is published while no more than `fetch.max_left_out_fraction` of its
scenes are left out that way.

Fetch jobs share one small state file per run that counts scenes failing in a
row for transient reasons: past `fetch.outage_after`, the imagery source is
taken to be down and the run's remaining fetches give up at once, instead of
spending every retry on every scene.
"""

from __future__ import annotations

import fcntl
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from s2basemap.atomic import atomic_write_json
from s2basemap.layout import Layout

TRANSIENT = "transient"
PERMANENT = "permanent"
HTTP_STATUS = re.compile(r"HTTP response code: (\d{3})")
# GDAL's words for a read that came back short or broken: the bytes were cut in
# transit (transient) or the file itself is short (permanent); only a look at
# the file's size can tell which
SHORT_READ = re.compile(
    r"TIFFFillTile|TIFFFillStrip|TIFFRead|IReadBlock failed|Read failed|Read error"
)
NOT_A_TIFF = "not recognized as being in a supported file format"
MAX_LISTED = 10


def error_text(exc: BaseException) -> str:
    """The exception's message and those of its causes: GDAL puts the detail in the causes."""
    parts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        parts.append(" ".join(str(exc).split()))
        exc = exc.__cause__ or exc.__context__
    return " <- ".join(p for p in parts if p)


def http_kind(status: int) -> str:
    return TRANSIENT if status in (408, 425, 429) or status >= 500 else PERMANENT


def classify(text: str) -> str | None:
    """TRANSIENT or PERMANENT from a failed read's message; None for a short read,
    which only the file's size can settle.

    A message we do not know is transient: a month is never published without a
    scene for a reason nobody could name as the file's own.
    """
    status = HTTP_STATUS.search(text)
    if status:
        return http_kind(int(status[1]))
    if "CURL error" in text:
        return TRANSIENT
    if NOT_A_TIFF in text:
        return PERMANENT
    if SHORT_READ.search(text):
        return None
    return TRANSIENT


class SceneUnavailable(Exception):
    """A scene could not be read for a transient reason; its month waits for it."""

    def __init__(self, scene_id: str, reason: str, attempts: int):
        self.entry = {"id": scene_id, "kind": TRANSIENT, "reason": reason, "attempts": attempts}
        super().__init__(
            f"{scene_id}: not read for now ({reason}); its month is not published "
            "until it is: run the workflow again to fetch it"
        )


class MonthNotPublished(Exception):
    """Too many of a month's scenes are unreadable to publish it."""


# --- the run's outage watch ---------------------------------------------------


class OutageWatch:
    """Scenes failing in a row for transient reasons, counted across a run's fetch jobs.

    The count lives in a small JSON file under a lock; the workflow removes the
    file as each run starts, so an outage stops one run, not the next. Without
    a path nothing is counted.
    """

    def __init__(self, path=None, limit: int | None = None):
        self.path = Path(path) if path is not None else None
        self.limit = limit

    def _update(self, change) -> dict:
        if self.path is None:
            return {"in_a_row": 0}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.seek(0)
            text = handle.read()
            state = json.loads(text) if text.strip() else {"in_a_row": 0}
            new = change(state)
            if new is not state:
                handle.seek(0)
                handle.truncate()
                handle.write(json.dumps(new))
            return new

    def down(self) -> str | None:
        """Why the source is taken to be down, or None while it is not."""
        if self.limit is None or self.path is None:
            return None
        state = self._update(lambda state: state)
        if state["in_a_row"] < self.limit:
            return None
        return (
            f"the imagery source looks down: {state['in_a_row']} scenes in a row failed "
            f"for network reasons (the last: {state['last']})"
        )

    def failed(self, reason: str) -> None:
        self._update(lambda state: {"in_a_row": state["in_a_row"] + 1, "last": reason})

    def answered(self) -> None:
        """The source answered (with the pixels, or with a permanent refusal)."""
        self._update(lambda state: state if state["in_a_row"] == 0 else {"in_a_row": 0})


def reset_outage(path) -> None:
    Path(path).unlink(missing_ok=True)


# --- the failure ledger: why a month is waiting --------------------------------


def note_failure(ledger_path, entry: dict) -> None:
    atomic_write_json(ledger_path, entry)


def clear_failure(ledger_path) -> None:
    Path(ledger_path).unlink(missing_ok=True)


def ledger(layout: Layout, period: str, scene_ids) -> list[dict]:
    """The noted failures of a period's current scenes, by scene id."""
    wanted = set(scene_ids)
    entries = []
    for path in sorted(Path(layout.failed_dir(period)).glob("*.json")):
        entry = json.loads(path.read_text())
        if entry.get("id") in wanted:
            entries.append(entry)
    return entries


# --- the month's verdict -------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    period: str
    total: int  # scenes the month fetches
    failed: tuple  # ledger entries: {"id", "kind", "reason", ...}
    max_fraction: float | None = None  # set when the month failed on the threshold

    def line(self, resume: str | None = None) -> str:
        """The month's failure in one line."""
        transient = [e for e in self.failed if e["kind"] == TRANSIENT]
        why = f"{len(self.failed)} of {self.total} scenes could not be read"
        if self.max_fraction is not None:
            share = len(self.failed) / self.total if self.total else 1.0
            why += (
                f" ({share:.0%} of the month, more than fetch.max_left_out_fraction "
                f"{self.max_fraction:g} allows)"
            )
        elif transient:
            why += f" ({len(transient)} for network reasons, e.g. {transient[0]['reason']})"
        else:
            why += " (the files themselves: more than fetch.max_left_out_fraction allows)"
        text = f"{self.period} not published: {why}; nothing of it was uploaded."
        if resume:
            text += f" To fetch just those scenes again, run: {resume}"
        return text

    def listing(self) -> str:
        lines = [f"• {e['id']} ({e['kind']}): {e['reason']}" for e in self.failed[:MAX_LISTED]]
        if len(self.failed) > MAX_LISTED:
            lines.append(f"… and {len(self.failed) - MAX_LISTED} more")
        return "\n".join(lines)


def vet_month(layout: Layout, period: str, record_paths, max_fraction: float) -> list[dict]:
    """The month's scenes left out for good; MonthNotPublished (listing them) when they are
    more than `max_fraction` of its scenes, and then the next run fetches them again."""
    records = [json.loads(Path(p).read_text()) for p in record_paths]
    failed = [
        {"id": r["id"], "kind": PERMANENT, "reason": r["reason"]}
        for r in records
        if r["status"] == "failed"
    ]
    if failed and len(failed) > max_fraction * len(records):
        record_of = {r["id"]: path for r, path in zip(records, record_paths, strict=True)}
        retry_next_run(layout, period, record_of, failed)
        verdict = Verdict(period, len(records), tuple(failed), max_fraction)
        raise MonthNotPublished(
            verdict.line() + " They are fetched again on the next run; to publish the month "
            "without them, raise fetch.max_left_out_fraction. "
            + "; ".join(f"{e['id']}: {e['reason']}" for e in failed)
        )
    return failed


def retry_next_run(layout: Layout, period: str, record_of: dict, failed: list[dict]) -> None:
    """Make the next run fetch these scenes again: their records (`record_of`, by scene
    id) move to the ledger, and a missing record is what reruns a fetch job."""
    for entry in failed:
        note_failure(layout.failed_record(period, entry["id"]), entry)
        Path(record_of[entry["id"]]).unlink(missing_ok=True)


def waiting_months(layout: Layout, periods) -> list[Verdict]:
    """Each unpublished period with noted failures, for the run's closing lines."""
    verdicts = []
    for period in periods:
        manifest = Path(layout.manifest(period))
        if layout.published(period) or not manifest.exists():
            continue
        ids = [s["id"] for s in json.loads(manifest.read_text())["scenes"]]
        failed = ledger(layout, period, ids)
        if failed:
            verdicts.append(Verdict(period, len(ids), tuple(failed)))
    return verdicts


def resume_command(argv: list[str]) -> str:
    """The command the user ran, to run again."""
    return shlex.join(["snakemake", *argv[1:]])
