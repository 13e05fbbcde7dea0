"""Session fixtures: the fabricated world and its servers on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import string
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from testworld import served_world

# The modules that run the workflow end to end, slowest first (seconds each on two
# workers, 2026-12-05: faults 399, SLURM 380, object storage 380, series 323, products
# 201, interrupts 156, then about 100 or less). pytest-xdist hands whole modules to its
# workers in collection order (pyproject: --dist=loadfile --no-loadscope-reorder), so
# these go first and the many quick modules fill in after them: both workers then
# finish about together instead of one waiting out the SLURM test alone.
SLOWEST_MODULES = [
    "test_faults",
    "test_slurm",
    "test_object_storage",
    "test_series",
    "test_products",
    "test_interrupts",
    "test_workflow",
    "test_inputs",
    "test_ops",
    "test_maskserver",
    "test_box",
    "test_sources",
    "test_conventions",
    "test_fusion",
]


def pytest_configure(config):
    """One numba cache for every run of the session (the job adapter keeps a
    NUMBA_CACHE_DIR it finds): each run would otherwise compile the mask and
    percentile kernels afresh in its own work_dir. A test world run takes 38 CPU s
    cold, 33 with the kernels cached. Set in the controller, before pytest-xdist
    starts its workers, so that they share it; test_inputs checks the default place
    with the variable unset."""
    if hasattr(config, "workerinput") or "NUMBA_CACHE_DIR" in os.environ:
        return
    config.numba_cache = tempfile.mkdtemp(prefix="s2b-test-numba-")
    os.environ["NUMBA_CACHE_DIR"] = config.numba_cache


def pytest_unconfigure(config):
    if hasattr(config, "numba_cache"):
        shutil.rmtree(config.numba_cache, ignore_errors=True)


def pytest_collection_modifyitems(items):
    missing = [m for m in SLOWEST_MODULES if not (Path(__file__).parent / f"{m}.py").exists()]
    if missing:
        raise pytest.UsageError(f"conftest.SLOWEST_MODULES names no such module: {missing}")
    rank = {module: i for i, module in enumerate(SLOWEST_MODULES)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: the rest as found


@pytest.fixture(scope="session")
def world_servers(tmp_path_factory):
    with served_world(tmp_path_factory.mktemp("world")) as (world, http, stac, _):
        yield world, http, stac


@contextmanager
def s3_endpoint(secret_key: str = "s3-secret", buckets=()):
    """moto's S3 on 127.0.0.1 (testworld.servers.S3Server) with `buckets`: yields the
    server, the environment a run needs to reach it, and a client."""
    import boto3

    from testworld.servers import S3Server

    server = S3Server().start()
    env = {
        "AWS_ACCESS_KEY_ID": "s3-key-id",
        "AWS_SECRET_ACCESS_KEY": secret_key,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    s3 = boto3.client(
        "s3",
        endpoint_url=server.url,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
    )
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    try:
        yield server, env, s3
    finally:
        server.stop()


@contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of `size` (as mount(8) takes it: "4m") mounted at `path`: a disk that
    fills up for real. Mounting needs root; without it the test is skipped."""
    path.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"a small disk needs a tmpfs mount, which needs root: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "--lazy", str(path)], check=True)


def fill(disk: Path) -> Path:
    """Fill `disk` to its last byte; the filler file, to delete to free it."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as handle:
        try:
            while handle.write(b"\0" * 65536):  # the last write is short, then ENOSPC
                pass
        except OSError:
            pass
    return filler


@pytest.fixture(scope="session")
def world(world_servers):
    return world_servers[0]


@pytest.fixture
def http_server(world_servers):
    server = world_servers[1]
    server.reset_counts()
    return server


REPO = Path(__file__).resolve().parents[1]
SNAKEFILE = REPO / "workflow" / "Snakefile"


@pytest.fixture(scope="session")
def weights(tmp_path_factory):
    """Fabricated OmniCloudMask v4 weights: "cloud", "clear" (one class everywhere), "random"."""
    from testworld.weights import fabricate_weights

    root = tmp_path_factory.mktemp("weights")
    return {kind: fabricate_weights(root / kind, kind) for kind in ("cloud", "clear", "random")}


CONFIGS = REPO / "tests" / "configs"


def named_config(name: str, **values) -> dict:
    """tests/configs/<name>.yaml with its ${placeholders} filled from `values`."""
    text = string.Template((CONFIGS / f"{name}.yaml").read_text())
    return yaml.safe_load(text.substitute({key: str(value) for key, value in values.items()}))


def world_config(world, weights_dir=None, scenario=None, values=None, **overrides) -> dict:
    """A workflow config for the test world: tests/configs/world.yaml, then the named
    `scenario` over it, then `overrides`; each replaces top-level keys. `values` fill
    the scenario's placeholders.

    Without `weights_dir` the masks come from SCL alone (no model)."""
    values = {"aoi": world.aoi_gpkg, "stac_url": world.stac_url} | (values or {})
    config = named_config("world", **values)
    if weights_dir is not None:
        config.update(named_config("ocm", weights_dir=weights_dir))
    if scenario is not None:
        config.update(named_config(scenario, **values))
    config.update(overrides)
    return config


def snakemake_command(
    workdir: Path,
    config: dict,
    *args: str,
    snakefile: Path = SNAKEFILE,
    from_workdir: bool = False,
) -> list[str]:
    """The workflow's CLI in `workdir`, with `config` written to config.yaml there.

    `from_workdir`: run from `workdir` (the caller sets the cwd) with relative paths
    and no --directory, as a user runs a checkout; Snakemake hands --directory on to
    jobs, which must not use the main process's directory when nothing is shared."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "config.yaml").write_text(yaml.safe_dump(config))
    if from_workdir:
        where = ["--snakefile", str(snakefile.relative_to(workdir)), "--configfile", "config.yaml"]
    else:
        where = [
            "--snakefile",
            str(snakefile),
            "--directory",
            str(workdir),
            "--configfile",
            str(workdir / "config.yaml"),
        ]
    return [sys.executable, "-m", "snakemake", *where, "--cores", "2", *args]


def run_snakemake(
    workdir: Path,
    config: dict,
    *args: str,
    check: bool = True,
    timeout: float = 600,
    env: dict | None = None,
    snakefile: Path = SNAKEFILE,
    from_workdir: bool = False,
) -> subprocess.CompletedProcess:
    """Run the workflow's CLI in `workdir` with `config` written to config.yaml there."""
    result = subprocess.run(
        snakemake_command(workdir, config, *args, snakefile=snakefile, from_workdir=from_workdir),
        cwd=workdir if from_workdir else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(
            f"snakemake failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
        )
    return result


def start_snakemake(
    workdir: Path, config: dict, env: dict | None = None, output=subprocess.DEVNULL
) -> subprocess.Popen:
    """Start the workflow's CLI in `workdir` in a session of its own, so that a test can
    signal the whole run (its process group) as SLURM or a reclaimed box would."""
    return subprocess.Popen(
        snakemake_command(workdir, config),
        stdout=output,
        stderr=subprocess.STDOUT if output is not subprocess.DEVNULL else subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


# When a run made a document, and how long its stages took, differ between any two runs.
RUN_TIMES = {"created", "updated", "processing_seconds"}  # the Collection has both


def without_run_times(doc):
    if isinstance(doc, dict):
        return {k: without_run_times(v) for k, v in doc.items() if k not in RUN_TIMES}
    if isinstance(doc, list):
        return [without_run_times(v) for v in doc]
    return doc


def fingerprint(name: str, data: bytes, exact: bool) -> str:
    """sha256 of a published file; of a JSON document without its run times unless `exact`."""
    if name.endswith(".json") and not exact:
        data = json.dumps(without_run_times(json.loads(data)), sort_keys=True).encode()
    return hashlib.sha256(data).hexdigest()


def products(workdir: Path, exact: bool = False) -> dict[str, str]:
    """Every published file's fingerprint, by its path under results/."""
    results = workdir / "results"
    return {
        name: fingerprint(name, p.read_bytes(), exact)
        for p in sorted(results.rglob("*"))
        if p.is_file() and (name := p.relative_to(results).as_posix())
    }


def planned_jobs(output: str) -> list[dict]:
    """Every job of a dry-run's output: {"rule": ..., wildcards..., "_input": ..., "_reason": ...}."""
    import re

    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:)", output):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if head:
            wildcards = re.search(r"wildcards: (.*)", block)
            job = dict(kv.split("=", 1) for kv in wildcards[1].split(", ")) if wildcards else {}
            job["rule"] = head[1]
            job["_input"] = (re.search(r"input: (.*)", block) or [None, ""])[1]
            job["_reason"] = (re.search(r"reason: (.*)", block) or [None, ""])[1]
            jobs.append(job)
    return jobs
