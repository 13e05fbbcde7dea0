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


def test_a_months_message_gives_its_processing_time_only_where_it_was_measured():
    from s2basemap.notify import month_message

    metadata = {
        "period": {"label": "2022-01"},
        "status": "ok",
        "valid_coverage": 0.5,
        "scenes": [{"id": "a"}, {"id": "b"}],
        "left_out": [],
        "processing_seconds": {"fetch": 10.0, "mask": 20.4, "composite": 3.0},
    }
    measured = month_message(metadata, "s3://bucket/2022-01/")
    assert "2 scenes used, valid coverage 50.0%, 33 s of processing, s3://" in measured
    # on object storage the jobs' benchmark files stay with the nodes: no figure
    unmeasured = month_message(metadata | {"processing_seconds": None}, "s3://bucket/2022-01/")
    assert "valid coverage 50.0%, s3://bucket/2022-01/" in unmeasured
    assert "processing" not in unmeasured
