"""The Snakemake workflow end to end on the test world, through its CLI."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, planned_jobs, run_snakemake, world_config

MONTHS = ["2022-01", "2022-02", "2022-03"]  # March has no scenes in the world


def jobs_of(output: str, rule: str) -> list[dict]:
    return [job for job in planned_jobs(output) if job["rule"] == rule]


@pytest.fixture(scope="module")
def fetched_run(world, weights, tmp_path_factory):
    """Plan first (search and HEADs), dry-run the rest (to see the DAG), then run
    everything, masking with OmniCloudMask ("always clear" weights) and SCL.

    The shared model process waits 10 minutes for work, so however slowly a busy
    machine runs the jobs, one process serves them all; it is ended with the module."""
    workdir = tmp_path_factory.mktemp("run")
    config = world_config(world, weights["clear"], months=MONTHS)
    config["mask"]["ocm"]["server_idle_seconds"] = 600
    try:
        run_snakemake(workdir, config, "plan")
        dry = run_snakemake(workdir, config, "--dry-run")
        run = run_snakemake(workdir, config)
        again = run_snakemake(workdir, config, "--dry-run")
        yield workdir, dry.stdout, run, again.stdout
    finally:
        server_log = workdir / "work" / "logs" / "mask_server.log"
        text = server_log.read_text() if server_log.exists() else ""
        for pid in re.findall(r"listening on .* \(pid (\d+)\)", text):
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGTERM)


def test_dag_holds_one_fetch_job_per_distinct_scene(world, fetched_run):
    _, dry, _, _ = fetched_run
    jobs = jobs_of(dry, "fetch_scene")
    for month in MONTHS:
        planned = sorted(j["scene"] for j in jobs if j["period"] == month)
        assert planned == [s.id for s in world.newest(month)]
    assert len(jobs) == len({(j["period"], j["scene"]) for j in jobs}) == 12
    assert "S2B_15SYU_20220115_0_L2A" not in dry  # the older duplicate never becomes a job


def test_dag_holds_one_mask_job_per_scene_after_its_fetch(fetched_run):
    _, dry, _, _ = fetched_run
    fetches = {(j["period"], j["scene"]) for j in jobs_of(dry, "fetch_scene")}
    masks = jobs_of(dry, "mask_scene")
    assert sorted((j["period"], j["scene"]) for j in masks) == sorted(fetches)
    for job in masks:  # Snakemake links jobs by files: the fetch output is the mask input
        assert f"work/{job['period']}/scenes/{job['scene']}.tif" in job["_input"]
        assert "PM_model_OCM_7.97" in job["_input"]  # and the model weights


def test_run_fetches_and_masks_every_scene_and_reports_each_month(world, fetched_run):
    workdir, _, _, _ = fetched_run
    for month in MONTHS:
        summary = json.loads((workdir / "work" / month / "scenes.json").read_text())
        assert sorted(s["id"] for s in summary["scenes"]) == [s.id for s in world.newest(month)]
        assert [e["id"] for e in summary["left_out"]] == (
            ["S2B_15SYU_20220115_0_L2A"] if month == "2022-01" else []
        )
        for entry in summary["scenes"]:
            record = json.loads(
                (workdir / "work" / month / "scenes" / f"{entry['id']}.json").read_text()
            )
            stats = json.loads(
                (workdir / "work" / month / "masks" / f"{entry['id']}.json").read_text()
            )
            assert record["status"] == "ok" and stats["status"] == "ok"
            assert entry["valid_fraction"] == stats["valid_fraction"] > 0
            assert stats["ocm"]["inference_resolution"] == 20 and stats["ocm"]["device"] == "cpu"
    march = json.loads((workdir / "work" / "2022-03" / "scenes.json").read_text())
    assert march["status"] == "no_scenes"
    search_log = (workdir / "work" / "logs" / "search" / "2022-03.log").read_text()
    assert "period 2022-03: no scenes" in search_log


def test_every_mask_job_used_one_shared_model_process(fetched_run):
    workdir, _, _, _ = fetched_run
    stats = sorted((workdir / "work").glob("2022-0[12]/masks/*.json"))
    assert len(stats) == 12
    assert all(json.loads(p.read_text())["ocm"]["process"] == "shared" for p in stats)
    server_log = (workdir / "work" / "logs" / "mask_server.log").read_text()
    # one model load for the twelve scenes of both months, and no exit in between
    assert server_log.count("model loaded in") == 1 and ": exiting" not in server_log
    job_log = (workdir / "work" / "logs" / "mask" / "2022-01" / f"{stats[0].stem}.log").read_text()
    assert f"[shared mask process] {stats[0].stem}: OmniCloudMask at 20 m on cpu" in job_log


def test_pixel_harmonisation_is_recorded_per_scene(world, fetched_run):
    workdir, _, _, _ = fetched_run
    records = sorted((workdir / "work").glob("2022-0[12]/scenes/*.json"))
    assert len(records) == 12
    for path in records:
        offset = json.loads(path.read_text())["offset"]
        assert offset["dn"] == (-1000 if world.scene(path.stem).spec.data_offset else 0), path
    # earth-search #71: flagged false, harmonised all the same; the pixels settle it
    record = json.loads((workdir / "work/2022-02/scenes/S2B_15SYU_20220224_0_L2A.json").read_text())
    assert record["offset"]["source"] == "pixels" and not record["offset"]["metadata"]["decided"]
    # flagged true: Element 84 removed the offset, whatever raster:bands says
    record = json.loads((workdir / "work/2022-01/scenes/S2A_15SYU_20220128_0_L2A.json").read_text())
    assert record["offset"]["source"] == "metadata" and record["offset"]["dn"] == 0


def test_second_run_has_nothing_to_do(fetched_run):
    _, _, _, again = fetched_run
    assert "Nothing to be done" in again


def test_offline_machine_without_weights_stops_with_staging_instructions(world, tmp_path):
    config = world_config(world, tmp_path / "no-weights", months=["2022-01"])
    started = time.monotonic()
    # no hub, and nothing in omnicloudmask's own directory either
    result = run_snakemake(
        tmp_path,
        config,
        check=False,
        env={"HF_ENDPOINT": "http://127.0.0.1:9", "XDG_DATA_HOME": str(tmp_path / "data")},
    )
    assert result.returncode != 0
    assert time.monotonic() - started < 120
    log = (tmp_path / "work" / "logs" / "ocm_weights.log").read_text()
    assert "cannot reach the model hub http://127.0.0.1:9" in log
    assert "snakemake ocm_weights" in log and str(tmp_path / "no-weights") in log
    assert not list((tmp_path / "work").glob("*/masks/*.tif"))  # no mask without a model
    # the weights are got first, not once the month is searched and planned
    output = result.stdout + result.stderr
    assert output.index("rule ocm_weights:") < output.index("checkpoint search:")
    assert "ERROR cannot reach the model hub http://127.0.0.1:9" in output


def test_weights_in_omnicloudmasks_own_directory_are_used_offline(world, weights, tmp_path):
    from s2basemap.ocm import weight_files

    data_home = tmp_path / "data"  # omnicloudmask's directory is under XDG_DATA_HOME
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "XDG_DATA_HOME": str(data_home)}
    own = subprocess.run(
        [
            sys.executable,
            "-c",
            ("from s2basemap.ocm import package_weights_dir; print(package_weights_dir())"),
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, **env},
    ).stdout.strip()
    assert own.startswith(str(data_home / "omnicloudmask"))
    Path(own).mkdir(parents=True)
    for name in weight_files(4.0):
        shutil.copyfile(weights["random"] / name, Path(own) / name)
    config = world_config(world, tmp_path / "weights", months=["2022-01"])
    run_snakemake(tmp_path, config, "ocm_weights", env=env)
    for name in weight_files(4.0):
        assert (tmp_path / "weights" / name).read_bytes() == (weights["random"] / name).read_bytes()


@pytest.mark.parametrize(
    ("change", "key"),
    [
        ({"target": {"crs": "EPSG:not-a-code"}}, "target.crs"),
        ({"target": {"resolution": -10}}, "target.resolution"),
        ({"composite": {"percentile": 150}}, "composite.percentile"),
        ({"aoi": "no/such/aoi.gpkg"}, "aoi"),
        ({"months": ["2025-13"]}, "months[0]"),
    ],
)
def test_bad_config_stops_before_any_job(world, tmp_path, change, key):
    config = world_config(world) | change
    result = run_snakemake(tmp_path, config, check=False)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert f"Invalid configuration: config key '{key}'" in output
    assert "Traceback" not in output
    assert not (tmp_path / "work").exists()  # no job ran, nothing was written


def test_lint_is_clean(world, tmp_path):
    result = run_snakemake(tmp_path, world_config(world), "--lint", check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Congratulations" in result.stdout + result.stderr


def test_snakefiles_are_snakefmt_formatted():
    result = subprocess.run(
        [sys.executable, "-m", "snakefmt", "--check", str(REPO / "workflow")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_month_fetches_only_after_the_month_before_has_all_its_tiles(fetched_run):
    """storage.months_in_flight = 1 (the default): February's first fetch starts after
    January's last tile is written, so January's scene rasters are already gone."""
    from datetime import datetime

    workdir = fetched_run[0] / "work"
    # the tiles themselves are gone with the month's other intermediates; their logs stay
    january_tiles = list((workdir / "logs" / "composite" / "2022-01").glob("*.log"))
    last_tile = max(tile.stat().st_mtime for tile in january_tiles)
    first_lines = [
        log.read_text().splitlines()[0]
        for log in (workdir / "logs" / "fetch" / "2022-02").glob("*.log")
    ]
    starts = [
        datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp() for line in first_lines
    ]
    assert january_tiles and len(starts) == 6
    assert min(starts) >= last_tile, (min(starts), last_tile)
    assert (workdir / "2022-01" / "tiles.done").exists()
    assert not list((workdir / "2022-01" / "scenes").glob("*.tif"))
    assert not list((workdir / "2022-01" / "columns").glob("*.tif"))


def test_a_configfile_with_date_ranges_alone_replaces_the_default_months(world, tmp_path):
    config = world_config(world, date_ranges=[{"start": "2022-01-03", "end": "2022-01-20"}])
    del config["months"]
    run_snakemake(tmp_path, config, "plan")
    searched = {
        job["period"]
        for job in planned_jobs(run_snakemake(tmp_path, config, "--dry-run").stdout)
        if "period" in job
    }
    assert searched == {"2022-01-03_2022-01-20"}
    defaults = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["months"]
    assert defaults and not set(defaults) & searched  # the default config does name months


def test_documented_commands_work_without_cores(world, tmp_path):
    """`snakemake plan` as the README writes it: the default profile supplies the cores."""
    import yaml

    from conftest import SNAKEFILE

    (tmp_path / "config.yaml").write_text(yaml.safe_dump(world_config(world, months=["2022-01"])))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "plan",
            "--snakefile",
            str(SNAKEFILE),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(tmp_path / "config.yaml"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "scenes" in (tmp_path / "work" / "plan.txt").read_text()
