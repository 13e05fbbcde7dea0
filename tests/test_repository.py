"""Repository promises: conda envs match the pip install, CI runs the README's command."""

from __future__ import annotations

import re
import tomllib

import yaml

from conftest import REPO

# pip name -> conda-forge name where they differ
CONDA_NAME = {"snakemake": "snakemake-minimal", "torch": "pytorch"}


def env_packages() -> dict[str, set[str]]:
    found = {}
    for path in sorted((REPO / "envs").glob("*.yaml")):
        names = set()
        for dep in yaml.safe_load(path.read_text())["dependencies"]:
            for spec in dep["pip"] if isinstance(dep, dict) else [dep]:
                names.add(re.split(r"[<>=\[ ]", spec, maxsplit=1)[0].lower())
        found[path.name] = names
    return found


def test_every_pip_dependency_is_in_a_conda_env():
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    available = set().union(*env_packages().values())
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=\[ ]", requirement, maxsplit=1)[0].lower()
        assert CONDA_NAME.get(name, name) in available, f"{name} is in no envs/*.yaml"


def test_every_rule_names_an_existing_env():
    rules = (REPO / "workflow" / "rules").glob("*.smk")
    for path in rules:
        text = path.read_text()
        for env in re.findall(r'conda:\s*\n\s*"([^"]+)"', text):
            assert (path.parent / env).resolve().is_file(), f"{path.name}: {env} missing"
        assert text.count("conda:") == len(re.findall(r"^(?:rule|checkpoint) ", text, re.MULTILINE))


def test_ci_runs_exactly_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    command = (
        'pip install -e ".[test]" && ruff check . && ruff format --check . && python -m pytest'
    )
    assert f"```bash\n{command}\n```" in readme
    assert [
        line for line in ci.splitlines() if line and not line.startswith(("#", "set ", "cd "))
    ] == [command]
