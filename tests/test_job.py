"""s2basemap.job: the adapter every workflow script goes through."""

from __future__ import annotations

import os
from dataclasses import asdict
from types import SimpleNamespace

import pytest
from snakemake.iocontainers import InputFiles, Log, OutputFiles, Params, Wildcards

from s2basemap.aoi import read_aoi
from s2basemap.grid import output_grid
from s2basemap.job import job
from s2basemap.layout import Layout
from s2basemap.periods import Period
from s2basemap.signing import PlanetaryComputerSigner, Signer


def script_job(tmp_path, world, source="earth-search-c1", **params):
    """What Snakemake hands a script: its own Namedlist types, filled as a rule fills them."""
    aoi = read_aoi(world.aoi_gpkg)
    aoi_json = tmp_path / "aoi.json"
    aoi_json.write_text(aoi.to_json())
    return SimpleNamespace(
        input=InputFiles(fromdict={"aoi": str(aoi_json)}),
        output=OutputFiles(fromdict={"manifest": str(tmp_path / "manifest.json")}),
        params=Params(fromdict=params),
        wildcards=Wildcards(fromdict={"period": "2022-02", "scene": "S2A_x"}),
        log=Log([str(tmp_path / "job.log")]),
        threads=3,
        config={
            "work_dir": str(tmp_path / "work"),
            "results_dir": str(tmp_path / "results"),
            "output": {"filename_base": "s2"},
            "stac": {"source": source},
        },
    )


def test_the_domain_objects_come_back_from_the_params(tmp_path, world):
    grid = output_grid(read_aoi(world.aoi_gpkg), "EPSG:32615", (10.0, 10.0), 256)
    february = Period.month("2022-02")
    snakemake = script_job(tmp_path, world, period=february.bounds(), grid=asdict(grid))
    with job(snakemake) as j:
        assert j.period == february
        assert j.grid == grid
        assert j.aoi.geometry.equals(read_aoi(world.aoi_gpkg).geometry)
        assert j.layout == Layout(str(tmp_path / "work"), str(tmp_path / "results"), "s2")
        assert (j.period_label, j.scene_id, j.threads) == ("2022-02", "S2A_x", 3)
        assert type(j.signer) is Signer


def test_a_signed_source_gets_its_signer(tmp_path, world):
    with job(script_job(tmp_path, world, source="planetary-computer")) as j:
        assert isinstance(j.signer, PlanetaryComputerSigner)


def test_numbas_cache_goes_under_work_dir(tmp_path, world, monkeypatch):
    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    with job(script_job(tmp_path, world)):
        assert os.environ["NUMBA_CACHE_DIR"] == f"{tmp_path}/work/.cache/numba"


def test_a_failing_job_says_one_line_and_logs_the_traceback(tmp_path, world, capsys):
    with pytest.raises(SystemExit) as exited, job(script_job(tmp_path, world)) as j:
        j.log.info("reading the manifest")
        raise KeyError("scenes")
    assert exited.value.code == 1
    line = f"ERROR KeyError: 'scenes' (traceback in {tmp_path}/job.log)"
    assert capsys.readouterr().err.strip().splitlines()[-1] == line
    log = (tmp_path / "job.log").read_text()
    assert "reading the manifest" in log and "Traceback" in log and "KeyError" in log


def test_each_built_object_names_the_modules_it_comes_from():
    """What s2basemap.provenance counts for a script using `j.<name>` is what builds it."""
    import ast
    import inspect

    import s2basemap.job as job_module
    from s2basemap.job import BUILT_FROM

    tree = ast.parse(inspect.getsource(job_module))
    top_level = {  # names imported at the top of job.py -> their module
        alias.asname or alias.name: node.module.split(".")[1]
        for node in tree.body
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2basemap.")
        for alias in node.names
    }
    [job_class] = [n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Job"]
    built = {}
    for function in job_class.body:
        if not isinstance(function, ast.FunctionDef):
            continue
        modules = {
            node.module.split(".")[1]
            for node in ast.walk(function)
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("s2basemap.")
        } | {
            top_level[node.id]
            for node in ast.walk(function)
            if isinstance(node, ast.Name) and node.id in top_level and node.id != "logging_to"
        }
        if modules:
            built[function.name] = tuple(sorted(modules))
    assert built == {name: tuple(sorted(modules)) for name, modules in BUILT_FROM.items()}
