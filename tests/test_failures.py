"""Transient or permanent, the run's outage watch, and a month's verdict on its failed scenes."""

from __future__ import annotations

import json
import multiprocessing

import pytest

from s2basemap.failures import (
    PERMANENT,
    TRANSIENT,
    MonthNotPublished,
    OutageWatch,
    classify,
    ledger,
    resume_command,
    vet_month,
    waiting_months,
)
from s2basemap.layout import Layout

# GDAL's own words, as rasterio raised them against the loopback server
MESSAGES = {
    "HTTP response code: 404": PERMANENT,
    "HTTP response code: 403": PERMANENT,
    "HTTP response code: 410": PERMANENT,
    "HTTP response code: 416": PERMANENT,  # a range past the end of a short file
    "HTTP response code: 429": TRANSIENT,
    "HTTP response code: 500": TRANSIENT,
    "HTTP response code: 503": TRANSIENT,
    "CURL error: Failed to connect to 127.0.0.1 port 59323 after 0 ms: Could not connect to server": TRANSIENT,
    "CURL error: Empty reply from server": TRANSIENT,
    "CURL error: Recv failure: Connection reset by peer": TRANSIENT,
    "CURL error: Operation timed out after 20001 milliseconds with 0 bytes received": TRANSIENT,
    "CURL error: Could not resolve host: nonexistent.invalid": TRANSIENT,
    "'/vsicurl/http://h/B04.tif' not recognized as being in a supported file format.": PERMANENT,
    # a short read: in transit or in the file, only its size can tell
    "Read failed. See previous exception for details. <- TIFFFillTile:Read error at row 512, "
    "col 512, tile 7; got 114525 bytes, expected 114759": None,
    "No space left on device": TRANSIENT,  # unknown: never a reason to publish without the scene
}


@pytest.mark.parametrize(("message", "kind"), MESSAGES.items())
def test_gdal_errors_are_told_apart(message, kind):
    assert classify(message) == kind


def _fail_many(path, n):
    watch = OutageWatch(path, limit=10_000)
    for _ in range(n):
        watch.failed("reset")


def test_the_outage_count_is_shared_by_concurrent_jobs(tmp_path):
    path = tmp_path / "outage.json"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_fail_many, [(path, 50)] * 4)
    assert json.loads(path.read_text())["in_a_row"] == 200
    assert (
        OutageWatch(path, limit=200).down().startswith("the imagery source looks down: 200 scenes")
    )
    assert OutageWatch(path, limit=201).down() is None
    assert OutageWatch(path, limit=None).down() is None  # never stops a run


def test_an_answer_ends_the_run_of_failures(tmp_path):
    watch = OutageWatch(tmp_path / "outage.json", limit=2)
    watch.failed("a")
    watch.answered()
    watch.failed("b")
    assert watch.down() is None
    watch.failed("c")
    assert "(the last: c)" in watch.down()


def month(tmp_path, statuses: dict[str, str]) -> list:
    """A period directory with one fetch record per scene id -> status."""
    scenes = tmp_path / "2022-02" / "scenes"
    scenes.mkdir(parents=True)
    paths = []
    for scene_id, status in statuses.items():
        record = {"id": scene_id, "status": status}
        if status == "failed":
            record |= {
                "kind": PERMANENT,
                "reason": f"unreadable: {scene_id}/B04.tif: HTTP response code: 404",
            }
        (scenes / f"{scene_id}.json").write_text(json.dumps(record))
        paths.append(str(scenes / f"{scene_id}.json"))
    (tmp_path / "2022-02" / "manifest.json").write_text(
        json.dumps({"period": "2022-02", "scenes": [{"id": i} for i in statuses]})
    )
    return paths


def test_a_month_within_the_threshold_is_published_with_its_failures(tmp_path):
    paths = month(tmp_path, {"a": "ok", "b": "failed", "c": "ok", "d": "no_overlap", "e": "ok"})
    failed = vet_month(
        Layout(str(tmp_path), "results", "s2"), "2022-02", paths, max_fraction=0.2
    )  # 1 of 5 is not more than 20 %
    assert [e["id"] for e in failed] == ["b"]
    assert all((tmp_path / "2022-02/scenes" / f"{i}.json").exists() for i in "abcde")


def test_a_month_over_the_threshold_fails_and_its_failed_scenes_are_fetched_again(tmp_path):
    paths = month(
        tmp_path, {"a": "ok", "b": "failed", "c": "failed", "d": "ok", "e": "ok", "f": "ok"}
    )
    with pytest.raises(MonthNotPublished) as caught:
        vet_month(Layout(str(tmp_path), "results", "s2"), "2022-02", paths, max_fraction=0.1)
    message = str(caught.value)
    assert message.startswith(
        "2022-02 not published: 2 of 6 scenes could not be read (33% of the month, "
        "more than fetch.max_left_out_fraction 0.1 allows)"
    )
    assert (
        "b: unreadable: b/B04.tif: HTTP response code: 404" in message
        and "c: unreadable" in message
    )
    # the records are gone (so the fetch jobs rerun) and the reasons kept in the ledger
    scenes = tmp_path / "2022-02/scenes"
    assert sorted(p.stem for p in scenes.glob("*.json")) == ["a", "d", "e", "f"]
    assert [
        e["id"] for e in ledger(Layout(str(tmp_path), "results", "s2"), "2022-02", "abcdef")
    ] == ["b", "c"]
    [verdict] = waiting_months(Layout(str(tmp_path), str(tmp_path / "results"), "s2"), ["2022-02"])
    assert verdict.total == 6 and [e["id"] for e in verdict.failed] == ["b", "c"]
    assert "the files themselves" in verdict.line()
    published = tmp_path / "results" / "2022-02" / "metadata.json"  # a published month waits not
    published.parent.mkdir(parents=True)
    published.write_text("{}")
    assert waiting_months(Layout(str(tmp_path), str(tmp_path / "results"), "s2"), ["2022-02"]) == []


def test_a_waiting_month_says_what_to_run(tmp_path):
    month(tmp_path, {"a": "ok", "b": "ok", "c": "ok"})
    failed = tmp_path / "2022-02" / "failed"
    failed.mkdir()
    for scene_id in "bc":
        (failed / f"{scene_id}.json").write_text(
            json.dumps(
                {
                    "id": scene_id,
                    "kind": TRANSIENT,
                    "reason": "unreadable after 5 attempts: CURL error: reset",
                }
            )
        )
    (failed / "gone.json").write_text(json.dumps({"id": "gone", "kind": TRANSIENT, "reason": "x"}))
    [verdict] = waiting_months(Layout(str(tmp_path), str(tmp_path / "results"), "s2"), ["2022-02"])
    resume = resume_command(["/usr/bin/snakemake", "--profile", "vast", "--cores", "all"])
    assert verdict.line(resume) == (
        "2022-02 not published: 2 of 3 scenes could not be read (2 for network reasons, e.g. "
        "unreadable after 5 attempts: CURL error: reset); nothing of it was uploaded. To fetch just "
        "those scenes again, run: snakemake --profile vast --cores all"
    )
    assert verdict.listing().splitlines() == [
        "• b (transient): unreadable after 5 attempts: CURL error: reset",
        "• c (transient): unreadable after 5 attempts: CURL error: reset",
    ]
