"""Slack messages through an incoming webhook (slack-sdk's WebhookClient).

The webhook URL comes from an environment variable and is never logged,
written or sent: it is a secret. No variable means no messages, and a webhook
that fails never fails the workflow.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_ENV = "SLACK_WEBHOOK_URL"
LOG_TAIL_LINES = 15
MAX_LISTED = 10


class Notifier:
    def __init__(self, env_var: str = DEFAULT_ENV, timeout: float = 10):
        self._url = os.environ.get(env_var) or None
        self.timeout = timeout

    @property
    def enabled(self) -> bool:
        return self._url is not None

    def redact(self, text: str) -> str:
        return text.replace(self._url, "<webhook>") if self._url else text

    def send(self, text: str) -> bool:
        """Post `text`; True when Slack (or whoever listens) answered 200."""
        if not self._url:
            return False
        from slack_sdk.webhook import WebhookClient

        try:
            response = WebhookClient(self._url, timeout=self.timeout).send(text=self.redact(text))
        except Exception as exc:  # noqa: BLE001 (network trouble of any kind must not fail a run)
            log.warning("Slack message not sent: %s", self.redact(f"{type(exc).__name__}: {exc}"))
            return False
        if response.status_code != 200:
            log.warning("Slack message not sent: HTTP %s", response.status_code)
            return False
        return True


def start_message(periods: list[str], aoi: str, workdir: str) -> str:
    return (
        f":satellite: s2basemap run started in {workdir}: {len(periods)} period(s) "
        f"({', '.join(periods)}), AOI {Path(aoi).name}"
    )


def month_message(metadata: dict, location: str) -> str:
    period = metadata["period"]["label"]
    if metadata["status"] != "ok":
        text = f":warning: {period}: no mosaic ({metadata['status'].replace('_', ' ')})"
        for other in metadata.get("source", {}).get("elsewhere", []):
            count = f"{other['items']}{'+' if other['at_least'] else ''}"
            text += (
                f"; {other['collection']} has {count} items for this period "
                f"(stac.source: {other['source']})"
            )
    else:
        coverage = metadata["valid_coverage"] or 0
        timings = metadata["processing_seconds"]
        seconds = f"{sum(timings.values()):.0f} s of processing, " if timings is not None else ""
        text = (
            f":white_check_mark: {period} mosaic done: {len(metadata['scenes'])} scenes used, "
            f"valid coverage {coverage:.1%}, {seconds}{location}"
        )
    left_out = metadata["left_out"]
    if left_out:
        lines = [f"• {e['id']}: {e['reason']}" for e in left_out[:MAX_LISTED]]
        more = f"\n… and {len(left_out) - MAX_LISTED} more" if len(left_out) > MAX_LISTED else ""
        text += f"\n{len(left_out)} scene(s) left out:\n" + "\n".join(lines) + more
    return text


def summary_message(metadata_paths: list[Path], elapsed: str) -> str:
    lines = []
    for path in metadata_paths:
        if path.exists():
            meta = json.loads(path.read_text())
            coverage = (
                f"{meta['valid_coverage']:.1%}" if meta.get("valid_coverage") is not None else "-"
            )
            lines.append(
                f"• {meta['period']['label']}: {meta['status']}, {len(meta['scenes'])} scenes, "
                f"coverage {coverage}"
            )
        else:
            lines.append(f"• {path.parent.name}: not produced")
    return f":checkered_flag: s2basemap run finished in {elapsed}\n" + "\n".join(lines)


ERROR_BLOCK = re.compile(r"Error in rule (?P<rule>\S+):\n(?P<body>(?:[ \t]+.*\n?)*)")
JOB_BLOCK = re.compile(
    r"^(?:local)?(?:rule|checkpoint) \S+:\n(?P<body>(?:[ \t]+.*\n?)*)", re.MULTILINE
)


def failed_jobs(snakemake_log: str) -> list[dict]:
    """Failed jobs from Snakemake's main log: rule, wildcards and log files.

    Error blocks name the job id but not always the wildcards; those come from
    the block that announced the job.
    """
    wildcards_of = {}
    for match in JOB_BLOCK.finditer(snakemake_log):
        jobid = re.search(r"jobid: (\d+)", match["body"])
        wildcards = re.search(r"wildcards: (.*)", match["body"])
        if jobid and wildcards:
            wildcards_of[jobid[1]] = wildcards[1].strip()
    jobs = []
    for match in ERROR_BLOCK.finditer(snakemake_log):
        body = match["body"]
        jobid = re.search(r"jobid: (\d+)", body)
        wildcards = re.search(r"wildcards: (.*)", body)
        logs = re.search(r"log: (.*?)(?: \(check log file)", body)
        jobs.append(
            {
                "rule": match["rule"],
                "wildcards": wildcards[1].strip()
                if wildcards
                else wildcards_of.get(jobid[1] if jobid else "", ""),
                "logs": [p.strip() for p in logs[1].split(",")] if logs else [],
            }
        )
    return jobs


def error_message(job: dict, workdir: Path) -> str:
    text = f":x: rule {job['rule']} failed" + (f" ({job['wildcards']})" if job["wildcards"] else "")
    for log_path in job["logs"]:
        path = workdir / log_path
        if path.exists():
            tail = path.read_text(errors="replace").splitlines()[-LOG_TAIL_LINES:]
            text += f"\nlast lines of {log_path}:\n```\n" + "\n".join(tail) + "\n```"
    return text


def job_period(job: dict) -> str | None:
    """The period wildcard of a failed job, if it has one."""
    match = re.search(r"period=([^,\s]+)", job["wildcards"])
    return match[1] if match else None


def report_errors(
    notifier: Notifier, snakemake_logs, workdir: Path, skip=lambda job: False
) -> None:
    """A message per failed job in Snakemake's main log(s), but those `skip` says are told
    otherwise; past MAX_LISTED jobs, one message counts the rest."""
    if isinstance(snakemake_logs, (str, Path)):
        snakemake_logs = [snakemake_logs]
    text = "\n".join(
        Path(p).read_text(errors="replace") for p in snakemake_logs or [] if Path(p).exists()
    )
    all_jobs = failed_jobs(text)
    jobs = [job for job in all_jobs if not skip(job)]
    for job in jobs[:MAX_LISTED]:
        notifier.send(error_message(job, workdir))
    if len(jobs) > MAX_LISTED:
        rules = sorted({job["rule"] for job in jobs[MAX_LISTED:]})
        notifier.send(
            f":x: … and {len(jobs) - MAX_LISTED} more failed jobs ({', '.join(rules)}); "
            "see the Snakemake log"
        )
    if not all_jobs:
        notifier.send(":x: s2basemap run failed before any job (see the Snakemake log)")
