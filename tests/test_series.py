"""A monthly series: only invalidated months rerun; storage is planned before fetching.

Each case compares the jobs a dry run plans. The series keeps its scene rasters
(storage.keep_scene_rasters), so reruns redo only what changed; the default,
which deletes them, is covered at the end.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, planned_jobs, run_snakemake, world_config
from testworld import StacServer, served_world
from testworld.build import add_acquisition

BOTH = ["2022-01", "2022-02"]
GLOBAL_RULES = {"all", "plan", "series_collection"}  # the Collection lists every month


@pytest.fixture(scope="module")
def own_world(tmp_path_factory):
    """A world of this module's own: its STAC catalogue gets a new scene half way."""
    with served_world(tmp_path_factory.mktemp("series-world")) as (world, _, stac, _):
        servers = {"stac": stac}
        yield world, servers
        servers["stac"].stop()  # the restarted one, if any


@pytest.fixture(scope="module")
def repo_copy(tmp_path_factory):
    """The workflow and package copied, so a test can change the code."""
    copy = tmp_path_factory.mktemp("repo")
    for part in ("workflow", "src", "envs", "profiles"):
        shutil.copytree(
            REPO / part, copy / part, symlinks=True, ignore=shutil.ignore_patterns("__pycache__")
        )
    return copy


def periods_of(jobs, rule=None):
    return {j.get("period") for j in jobs if rule is None or j["rule"] == rule}


@pytest.fixture(scope="module")
def series(own_world, repo_copy, tmp_path_factory):
    world, servers = own_world
    workdir = tmp_path_factory.mktemp("series")
    snakefile = repo_copy / "workflow" / "Snakefile"

    def run(config, *args):
        return run_snakemake(workdir, config, *args, snakefile=snakefile)

    def dry(config):
        return planned_jobs(run(config, "--dry-run").stdout)

    storage = {"keep_scene_rasters": True}
    first = world_config(world, months=["2022-01"], storage=storage)
    both = world_config(world, months=BOTH, storage=storage)
    run(first)
    found = {"month_added": dry(both)}
    run(both)
    found["unchanged"] = dry(both)
    found["override"] = dry(both | {"overrides": {"2022-02": {"composite": {"percentile": 50}}}})

    found["code_changed"] = {}
    for code in sorted((repo_copy / "src" / "s2basemap").glob("*.py")):
        original = code.read_text()
        code.write_text(original + "\n# a change to this module\n")
        found["code_changed"][code.stem] = dry(both)
        code.write_text(original)

    new_id = add_acquisition(world, "S2A_16SBU_20220214_0_L2A", "2022-02-19")
    servers["stac"].stop()
    servers["stac"] = StacServer(
        world.item_files, world.root / "rustac.log", port=servers["stac"].port
    ).wait_ready()
    run(both, "plan", "--forcerun", "search")  # refresh every month's scene list
    found["new_scene"] = dry(both)
    found["new_scene_id"] = new_id
    return found


def test_nothing_changed_nothing_runs(series):
    assert series["unchanged"] == []


def test_month_added_runs_only_that_month(series):
    jobs = series["month_added"]
    assert periods_of(jobs) - {None} == {"2022-02"}, [
        j for j in jobs if j.get("period") == "2022-01"
    ]
    assert {j["rule"] for j in jobs if "period" not in j} <= GLOBAL_RULES
    assert any(j["rule"] == "search" for j in jobs)


def test_changed_override_reruns_only_that_months_composite(series):
    jobs = series["override"]
    assert periods_of(jobs) - {None} == {"2022-02"}
    assert {j["rule"] for j in jobs} == {
        "composite_column",
        "assemble_mosaic",
        "period_metadata",
        "series_collection",
        "all",
    }


# Which rules' own code each package module is, read off the imports by hand: a
# rule reruns when a module its script imports, directly or through another, changes.
SEARCH, FETCH, MASK, COMPOSITE = "search", "fetch_scene", "mask_scene", "composite_column"
ASSEMBLE, METADATA = "assemble_mosaic", "period_metadata"
COLLECTION = "series_collection"
CODE_OF = {
    # what the search records of an acquisition, and the composite reads of it
    "acquisitions": {SEARCH, FETCH, COMPOSITE, ASSEMBLE, METADATA},
    "aoi": {SEARCH, FETCH, COMPOSITE, ASSEMBLE, METADATA},
    "atomic": {SEARCH, FETCH, MASK, COMPOSITE, ASSEMBLE, METADATA, COLLECTION},
    "catalog": {METADATA, COLLECTION},
    "composite": {COMPOSITE, ASSEMBLE, METADATA},  # outputs imports composite
    "disk": {SEARCH, FETCH, MASK, COMPOSITE, ASSEMBLE, METADATA, COLLECTION},  # behind atomic
    "failures": {FETCH},
    "fusion": {COMPOSITE, ASSEMBLE, METADATA},  # one observation per acquisition
    "fetch": {FETCH},
    "grid": {COMPOSITE, ASSEMBLE, METADATA},
    # where every file is: the jobs that find per-node files by it (fetch's failure
    # ledger and outage watch, the model process's log); the rest is declared
    "layout": {FETCH, MASK},
    # fetch reads the search's scene records, the metadata the month's manifest
    "manifest": {SEARCH, FETCH, MASK, ASSEMBLE, METADATA},
    "maskkernels": {MASK},  # the mask's numba kernels, behind ocm and masks
    "masks": {MASK},
    # the mask's tags that say whether its scene is usable, read by composites
    "masktags": {MASK, COMPOSITE, ASSEMBLE, METADATA},
    "methods": {COMPOSITE, ASSEMBLE, METADATA},  # the pick and medoid kernels
    "maskserver": {MASK},
    "notify": {METADATA},  # the metadata job also sends the month's message
    "ocm": {MASK},
    "outputs": {ASSEMBLE, METADATA},
    "percentile": {COMPOSITE, ASSEMBLE, METADATA},
    "periods": {SEARCH, FETCH, COMPOSITE, ASSEMBLE, METADATA},  # the date band's days
    "provenance": {ASSEMBLE, METADATA},
    "radiometry": {SEARCH, FETCH},
    "search": {SEARCH, FETCH},
    "signing": {FETCH},
    "sources": {SEARCH, FETCH},  # search's adapters; fetch reads search's band names
    "stall": {FETCH},  # the guard on a fetch's reads
    "warp": {COMPOSITE, ASSEMBLE, METADATA},
    # the parse-time side, logging, planning, upload: nothing finished reruns
    "__init__": set(),
    "config": set(),
    "inventory": set(),  # the main process's one listing of a run's S3 objects
    "job": set(),  # the adapter: what a job uses of it counts as the modules behind it
    "logs": set(),
    "runlock": set(),  # the main process's claim on the directory
    "stopping": set(),  # the main process's SIGTERM handler
    "storage": set(),
    "timeplan": set(),
    "upload": set(),
}


# What a dry run shows when a rule's code changed: the rule and what reads its outputs.
# A changed search hides the rest of its month until the search has run again.
SHOWN = {
    SEARCH: {SEARCH, METADATA, COLLECTION},
    FETCH: {FETCH, MASK, "scene_summary", COMPOSITE, ASSEMBLE, METADATA, COLLECTION},
    MASK: {MASK, "scene_summary", COMPOSITE, ASSEMBLE, METADATA, COLLECTION},
    COMPOSITE: {COMPOSITE, ASSEMBLE, METADATA, COLLECTION},
    ASSEMBLE: {ASSEMBLE, METADATA, COLLECTION},
    METADATA: {METADATA, COLLECTION},
    COLLECTION: {COLLECTION},
}
SCRIPT_OF = {
    SEARCH: "search.py",
    FETCH: "fetch_scene.py",
    MASK: "mask_scene.py",
    COMPOSITE: "composite_column.py",
    ASSEMBLE: "assemble_mosaic.py",
    METADATA: "period_metadata.py",
    COLLECTION: "series_collection.py",
}


@pytest.mark.parametrize("rule", sorted(SCRIPT_OF))
def test_a_rules_code_is_every_module_its_script_imports_at_any_depth(rule):
    from s2basemap.provenance import package_modules_behind

    script = REPO / "workflow" / "scripts" / SCRIPT_OF[rule]
    assert package_modules_behind(script) == {m for m, rules in CODE_OF.items() if rule in rules}


def test_every_package_module_is_in_the_table(repo_copy):
    assert {p.stem for p in (repo_copy / "src" / "s2basemap").glob("*.py")} == set(CODE_OF)


@pytest.mark.parametrize("module", sorted(CODE_OF))
def test_a_code_change_reruns_exactly_the_rules_behind_it(series, module):
    jobs = series["code_changed"][module]
    rules = CODE_OF[module]
    shown = SHOWN[SEARCH] if SEARCH in rules else set().union(*(SHOWN[rule] for rule in rules))
    assert {j["rule"] for j in jobs} - {"all"} == shown
    # the first rule to rerun does so for its code; the others also because it did
    first = [j for j in jobs if "updated by another job" not in j["_reason"] and j["rule"] != "all"]
    assert all(j["rule"] in rules and "Params have changed" in j["_reason"] for j in first)
    assert bool(first) == bool(rules)
    if module == "percentile":  # compositing code: composites rerun, fetches and masks do not
        assert periods_of(jobs, COMPOSITE) == set(BOTH)
        assert {j["rule"] for j in jobs} == {COMPOSITE, ASSEMBLE, METADATA, COLLECTION, "all"}


def test_new_scene_reruns_only_what_depends_on_it(series, own_world):
    jobs = series["new_scene"]
    new_id = series["new_scene_id"]
    assert periods_of(jobs) - {None} == {"2022-02"}
    assert [j["scene"] for j in jobs if j["rule"] == "fetch_scene"] == [new_id]
    assert [j["scene"] for j in jobs if j["rule"] == "mask_scene"] == [new_id]
    composites = [j for j in jobs if j["rule"] == "composite_column"]
    assert composites and all(new_id in j["_input"] for j in composites)  # only columns it touches
    assert {j["rule"] for j in jobs} == {
        "fetch_scene",
        "mask_scene",
        "composite_column",
        "scene_summary",
        "assemble_mosaic",
        "period_metadata",
        "series_collection",
        "all",
    }


# Runs Snakemake's CLI in this process with os.remove and os.unlink sampling the bytes
# under the roots first: argv is the roots, the file for the peak, then Snakemake's own.
PEAK_AT_EVERY_DELETION = """
import os, sys, threading

from snakemake.cli import main
from s2basemap.storage import bytes_under

work, results, out = sys.argv[1:4]
sys.argv = ["snakemake", *sys.argv[4:]]
peak, lock = 0, threading.Lock()


def sample():
    global peak
    with lock:
        peak = max(peak, bytes_under(work) + bytes_under(results))


def sampled(delete):
    def before_deleting(*args, **kwargs):
        sample()
        return delete(*args, **kwargs)

    return before_deleting


os.remove, os.unlink = sampled(os.remove), sampled(os.unlink)
try:
    main()
finally:
    sample()
    with open(out, "w") as handle:
        handle.write(str(peak))
"""


def measure_peak(workdir, config):
    """Run the workflow; (peak bytes under work_dir and results_dir, its output).

    Measured where the bytes can fall, not on a clock (a sampler every 20 ms missed
    short peaks on a busy machine). They fall only when a file is deleted: the jobs
    write each file under a temporary name and rename it into place, and the run's
    deletions are Snakemake's temp files, which its main process removes once their
    last reader is done. So the bytes are measured just before every os.remove and
    os.unlink of the main process (PEAK_AT_EVERY_DELETION runs Snakemake's CLI), and
    once at the end; between two of those moments they only grow, so the largest
    measurement is the run's peak, however slowly the machine runs jobs or measuring."""
    (workdir / "config.yaml").write_text(__import__("yaml").safe_dump(config))
    peak_file = workdir / "measured-peak"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            PEAK_AT_EVERY_DELETION,
            str(workdir / "work"),
            str(workdir / "results"),
            str(peak_file),
            "--snakefile",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
            "--cores",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "Removing temporary output" in output  # the deletions the samples are for
    return int(peak_file.read_text()), output


def test_plan_estimates_peak_disk_within_a_quarter(world, tmp_path):
    """The plan's peak against the run's own, measured at every deletion (`measure_peak`)."""
    config = world_config(world, months=BOTH)
    run_snakemake(tmp_path, config, "plan")
    plan = json.loads((tmp_path / "work" / "plan.json").read_text())
    report = (tmp_path / "work" / "plan.txt").read_text()
    assert "total" in report and "free disk" in report
    assert plan["total"]["scenes"] == 12 and set(plan["periods"]) == set(BOTH)
    # after planning, a dry run shows every per-scene job
    jobs = planned_jobs(run_snakemake(tmp_path, config, "--dry-run").stdout)
    assert len([j for j in jobs if j["rule"] == "fetch_scene"]) == 12
    peak, _ = measure_peak(tmp_path, config)
    estimate = plan["total"]["peak_bytes"]
    print(f"estimated peak {estimate} B, measured peak {peak} B ({estimate / peak - 1:+.1%})")
    assert abs(estimate - peak) <= 0.25 * peak
    # the default deletes scene rasters, masks and tiles once the products are written
    for kind in ("scenes", "masks", "columns"):
        assert not list((tmp_path / "work").glob(f"*/{kind}/*.tif")), kind
    assert len(list((tmp_path / "work").glob("*/masks/*.json"))) == 12
    # and a later change to one month reruns that month only (fetches included)
    changed = world_config(
        world, months=BOTH, overrides={"2022-01": {"composite": {"percentile": 40}}}
    )
    jobs = planned_jobs(run_snakemake(tmp_path, changed, "--dry-run").stdout)
    assert periods_of(jobs) - {None} == {"2022-01"}


def test_too_little_disk_stops_before_fetching_with_the_numbers(world, tmp_path):
    config = world_config(world, months=BOTH, storage={"free_disk_limit_gb": 0.0001})
    result = run_snakemake(tmp_path, config, check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "not enough free disk: the plan needs" in output and "100.0 kB are free" in output
    assert "storage.check_free_disk: false" in output
    assert not list((tmp_path / "work").glob("*/scenes/*"))  # nothing fetched
    assert not (tmp_path / "work" / "logs" / "fetch").exists()
    # the switch lets the same run go ahead
    allowed = config | {"storage": {"free_disk_limit_gb": 0.0001, "check_free_disk": False}}
    run_snakemake(tmp_path, allowed, "work/2022-01/scenes.json")
    assert len(list((tmp_path / "work" / "2022-01" / "masks").glob("*.json"))) == 6
