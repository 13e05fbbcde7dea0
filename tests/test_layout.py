"""s2basemap.layout: every file of a run, spelled in one place."""

from __future__ import annotations

import ast
import re
from datetime import date

import pytest

from conftest import REPO
from s2basemap.layout import Layout
from s2basemap.periods import Period

LAYOUT = Layout("scratch/work", "out", "s2_mosaic")


def test_a_periods_files_sit_under_work_dir_and_results_dir():
    scene = "S2A_15SYU_20220128_0_L2A"
    assert LAYOUT.manifest("2022-01") == "scratch/work/2022-01/manifest.json"
    assert LAYOUT.scene_raster("2022-01", scene) == f"scratch/work/2022-01/scenes/{scene}.tif"
    assert LAYOUT.scene_record("2022-01", scene) == f"scratch/work/2022-01/scenes/{scene}.json"
    assert LAYOUT.failed_record("2022-01", scene) == f"scratch/work/2022-01/failed/{scene}.json"
    assert LAYOUT.mask("2022-01", scene) == f"scratch/work/2022-01/masks/{scene}.tif"
    assert LAYOUT.mask_stats("2022-01", scene) == f"scratch/work/2022-01/masks/{scene}.json"
    assert LAYOUT.column("2022-01", "3") == "scratch/work/2022-01/columns/3.tif"
    assert LAYOUT.metadata("2022-01") == "out/2022-01/metadata.json"
    assert LAYOUT.item("2022-01") == "out/2022-01/item.json"
    assert LAYOUT.plan() == "scratch/work/plan.json"


def test_without_values_the_paths_are_the_rules_patterns():
    assert LAYOUT.scene_raster() == "scratch/work/{period}/scenes/{scene}.tif"
    assert (
        LAYOUT.log("fetch", "{period}", "{scene}") == "scratch/work/logs/fetch/{period}/{scene}.log"
    )
    assert LAYOUT.log("plan") == "scratch/work/logs/plan.log"
    assert LAYOUT.benchmark("composite", key="{column}") == (
        "scratch/work/benchmarks/composite/{period}/{column}.tsv"
    )


def test_products_are_named_like_the_reference_systems():
    period = Period.date_range(date(2025, 6, 3), date(2025, 7, 2))
    products = LAYOUT.products(period.label, period.filename_dates)
    stem = "out/2025-06-03_2025-07-02/s2_mosaic_2025_06_03_to_2025_07_02"
    assert products == {
        "mosaic": f"{stem}.tif",
        "counts": f"{stem}_count.tif",
        "quicklook": f"{stem}_quicklook.png",
    }


def test_published_means_the_metadata_is_written(tmp_path):
    layout = Layout(str(tmp_path / "work"), str(tmp_path / "results"), "s2")
    assert not layout.published("2022-01")
    (tmp_path / "results" / "2022-01").mkdir(parents=True)
    (tmp_path / "results" / "2022-01" / "metadata.json").write_text("{}")
    assert layout.published("2022-01") and not layout.published("2022-02")


def code_strings(path) -> list[str]:
    """The string literals of a Python file's code (docstrings left out)."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
        if id(node) not in docstrings
    ]


def smk_strings(path) -> list[str]:
    """The one-line string literals of a Snakemake file (docstrings and comments left out)."""
    text = re.sub(r'"""(?:.|\n)*?"""', "", path.read_text())
    text = re.sub(r"(?m)^\s*#.*$", "", text)
    return re.findall(r'"([^"\n]*)"', text)


# Each file name or folder of the layout, as a template spells it.
FRAGMENTS = [
    "/manifest.json",
    "/sizes.json",
    "/scenes.json",
    "/metadata.json",
    "/item.json",
    "/collection.json",
    "/collection-upload.json",
    "/plan.json",
    "/plan.txt",
    "/aoi.json",
    "/fetch_outage.json",
    "/upload.json",
    "/statistics.tsv",
    "/tiles.done",
    "/fetch.gate",
    "/scenes/",
    "/masks/",
    "/columns/",
    "/failed",
    "/logs/",
    "/benchmarks/",
    "/.cache/numba",
    "_count.tif",
    "_quicklook.png",
]


def test_no_path_template_is_spelled_outside_the_layout():
    sources = [
        *(REPO / "src" / "s2basemap").glob("*.py"),
        *(REPO / "workflow" / "scripts").glob("*.py"),
    ]
    snakemake_files = [
        *(REPO / "workflow" / "rules").glob("*.smk"),
        REPO / "workflow" / "Snakefile",
    ]
    literals = {path: code_strings(path) for path in sources} | {
        path: smk_strings(path) for path in snakemake_files
    }
    layout_file = REPO / "src" / "s2basemap" / "layout.py"
    for fragment in FRAGMENTS:
        where = [
            path.name for path, strings in literals.items() if any(fragment in s for s in strings)
        ]
        assert where == ["layout.py"], f"{fragment!r} is spelled in {where}"
    assert layout_file in literals


@pytest.mark.parametrize("name", ["Snakefile", "rules/setup.smk", "rules/inputs.smk"])
def test_the_rules_take_their_paths_from_the_layout(name):
    # f-strings over work_dir or results_dir were how paths got spelled twice
    text = (REPO / "workflow" / name).read_text()
    assert not re.search(r'f"\{(WORK|RESULTS|LOGS|BENCHMARKS)\}', text)
    assert 'config["work_dir"]' not in text and 'config["results_dir"]' not in text
