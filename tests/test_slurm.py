"""The test world's months on a real single-node SLURM cluster, through profiles/slurm and
Snakemake's SLURM executor plugin, byte for byte as a local run.

tests/slurm/cluster.sh starts munged, slurmctld and slurmd (installing Debian's SLURM
with apt where it is missing) and stops them after. Where SLURM cannot be installed or
run, the test is skipped, saying why.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import REPO, run_snakemake, world_config

CLUSTER = REPO / "tests" / "slurm" / "cluster.sh"
PROFILE = REPO / "profiles" / "slurm" / "config.yaml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    lab = tmp_path_factory.mktemp("slurm")
    env = os.environ | {
        "SLURM_LAB": str(lab),
        "SLURM_CTLD_PORT": str(free_port()),
        "SLURM_SLURMD_PORT": str(free_port()),
    }
    started = subprocess.run(
        ["bash", str(CLUSTER), "start"],
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,  # apt's own steps time out after 600 s each
        check=False,
    )
    if started.returncode == 3:
        pytest.skip(started.stderr.strip().splitlines()[-1])
    try:
        assert started.returncode == 0, started.stderr
        yield {
            "SLURM_CONF": str(lab / "etc" / "slurm.conf"),
            "PATH": f"{lab / 'bin'}:{os.environ['PATH']}",
        }
    finally:
        subprocess.run(["bash", str(CLUSTER), "stop"], env=env, timeout=300, check=False)


def slurm_command(env, *args: str) -> str:
    """A SLURM client command's output, on the test cluster."""
    return subprocess.run(
        args, env=os.environ | env, capture_output=True, text=True, check=True
    ).stdout


def node_size(env) -> tuple[int, int]:
    """(CPUs, memory in MB) of the cluster's node."""
    cpus, memory = slurm_command(env, "sinfo", "-h", "-o", "%c %m", "-p", "compute").split()
    return int(cpus), int(memory.rstrip("+"))


def profile_for(env, directory: Path) -> Path:
    """profiles/slurm as it is, its requests cut to this one small node, and squeue for
    job status (the test cluster has no accounting; see the profile's comment)."""
    cpus, memory = node_size(env)
    profile = yaml.safe_load(PROFILE.read_text())
    for resources in (profile["default-resources"], *profile["set-resources"].values()):
        resources["cpus_per_task"] = min(resources["cpus_per_task"], cpus)
        resources["mem_mb"] = min(resources["mem_mb"], memory // 4)
    profile |= {
        "jobs": 4,
        "latency-wait": 10,
        "retries": 0,
        "slurm-status-command": "squeue",
        "slurm-init-seconds-before-status-checks": 1,
        "seconds-between-status-checks": 1,
        "slurm-keep-successful-logs": True,
    }
    directory.mkdir(parents=True)
    (directory / "config.yaml").write_text(yaml.safe_dump(profile))
    return directory


def digests(results: Path) -> dict[str, str]:
    return {
        str(path.relative_to(results)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(results.rglob("*"))
        if path.suffix in (".tif", ".png")
    }


def test_the_months_on_slurm_are_byte_identical_to_a_local_run(world, cluster, tmp_path):
    config = world_config(world)
    run_snakemake(tmp_path / "local", config)
    profile = profile_for(cluster, tmp_path / "profile")
    started = time.monotonic()
    run_snakemake(tmp_path / "slurm", config, "--profile", str(profile), env=cluster, timeout=1800)
    print(f"the SLURM run took {time.monotonic() - started:.0f} s")
    local, on_slurm = (
        digests(tmp_path / "local" / "results"),
        digests(tmp_path / "slurm" / "results"),
    )
    assert len(local) == 6 and on_slurm == local  # mosaic, count and quicklook of two months
    # every job went through sbatch, the GPU-tagged ones asking for the node's GPU
    logs = tmp_path / "slurm" / ".snakemake" / "slurm_logs"
    for rule in ("search", "fetch_scene", "mask_scene", "composite_column", "assemble_mosaic"):
        assert list((logs / f"rule_{rule}").rglob("*.log")), rule
    requests = finished_jobs(cluster)
    assert {rule for rule, gres in requests if "gpu" in gres} == {"mask_scene", "composite_column"}
    assert any(rule == "fetch_scene" for rule, _ in requests)


def finished_jobs(env) -> list[tuple[str, str]]:
    """(rule, trackable resources per job, e.g. gres:gpu:1) of the cluster's jobs, finished
    ones included (they stay listed for MinJobAge)."""
    out = slurm_command(env, "squeue", "-h", "-t", "all", "-O", "comment:100,tres-per-job:100")
    return [
        (comment.removeprefix("rule_").split("_wildcards_")[0], tres)
        for comment, tres in (line.split() for line in out.splitlines())
    ]
