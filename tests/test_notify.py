"""s2basemap.notify: Slack messages, and failed jobs read from Snakemake's log."""

from __future__ import annotations

from s2basemap.notify import Notifier, failed_jobs


def test_unset_webhook_sends_nothing(monkeypatch):
    monkeypatch.delenv("SLACK_WEBHOOK_URL", raising=False)
    notifier = Notifier()
    assert not notifier.enabled and notifier.send("hello") is False


def test_failed_jobs_are_read_from_snakemakes_log():
    log = (
        "rule fetch_scene:\n    input: work/aoi.json\n    jobid: 7\n"
        "    wildcards: period=2022-01, scene=x\n    resources: tmpdir=/tmp\n\n"
        "Error in rule fetch_scene:\n    message: None\n    jobid: 7\n"
        "    input: work/aoi.json\n    output: work/2022-01/scenes/x.tif\n"
        "    log: work/logs/fetch/2022-01/x.log (check log file(s) for error details)\n"
        "\nShutting down\n"
    )
    assert failed_jobs(log) == [
        {
            "rule": "fetch_scene",
            "wildcards": "period=2022-01, scene=x",
            "logs": ["work/logs/fetch/2022-01/x.log"],
        }
    ]
