"""The shared OmniCloudMask process: a real server process on a real Unix socket."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from s2basemap.masks import MaskOptions, mask_scene
from s2basemap.maskserver import MaskServerError, request_mask, run_mask_job, socket_path
from testworld.stacks import write_scene


@pytest.fixture
def runtime(tmp_path, monkeypatch):
    """Each test gets its own socket directory (short: socket paths are limited), so it
    starts its own server; the servers still running at its end are killed, as their
    idle time is long (see `mask_options`)."""
    sockets = tempfile.mkdtemp(prefix="s2m", dir="/tmp")
    monkeypatch.setenv("S2BASEMAP_RUNTIME_DIR", sockets)
    yield tmp_path
    for pid in servers_under(sockets):
        with contextlib.suppress(ProcessLookupError):  # it may have just left by itself
            os.kill(pid, signal.SIGKILL)
        _wait_gone(pid)
    shutil.rmtree(sockets, ignore_errors=True)


def servers_under(sockets: str) -> list[int]:
    """The running shared processes whose socket is in `sockets`, by their command line."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:  # it ended meanwhile
            continue
        if b"s2basemap.maskserver" in argv and any(
            arg.startswith(f"{sockets}/".encode()) for arg in argv
        ):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    rng = np.random.default_rng(5)
    transform = Affine(10, 0, 399960, 0, -10, 4000020)
    made = [write_scene(root, f"S{i}", 32615, transform, 200 + 10 * i, 180, rng) for i in range(3)]
    records = [{"id": s.id, "status": "ok", "aoi_pixels": None} for s in made]
    return [(s.tif, r) for s, r in zip(made, records)]


# Far longer than any test takes, on however busy a machine: a server that a test
# counts must not leave for idleness while the test works elsewhere (an in-process
# reference mask loads the model, 11 s under load). The idle exit has its own test.
IDLE_SECONDS = 600


def mask_options(weights_dir, idle=IDLE_SECONDS) -> dict:
    return {
        "mode": "ocm+scl",
        "scl_invalid": [1, 3, 8, 9, 10, 11],
        "dilation_metres": 0,
        "ocm": {
            "weights_dir": str(weights_dir),
            "server_idle_seconds": idle,
            "inference_resolution": 20,
            "device": "cpu",
            "batch_size": 2,
            "patch_size": 1000,
            "patch_overlap": 100,
            "model_version": 4.0,
            "server": True,
        },
    }


def server_pids(log_path) -> list[int]:
    return [int(p) for p in re.findall(r"listening on .* \(pid (\d+)\)", log_path.read_text())]


def read(path):
    with rasterio.open(path) as src:
        return src.read(1)


def without_timing(stats):
    ocm = {k: v for k, v in stats["ocm"].items() if k not in ("seconds", "process")}
    return {**stats, "ocm": ocm}


def test_shared_process_masks_exactly_as_a_job_would(runtime, scenes, weights):
    options = mask_options(weights["random"])
    server_log = runtime / "logs" / "mask_server.log"
    for i, (tif, record) in enumerate(scenes):
        shared = request_mask(tif, record, runtime / f"shared{i}.tif", options, "d1", 2, server_log)
        local = mask_scene(tif, record, runtime / f"local{i}.tif", MaskOptions.from_config(options))
        np.testing.assert_array_equal(
            read(runtime / f"shared{i}.tif"), read(runtime / f"local{i}.tif")
        )
        assert without_timing(shared) == without_timing(local)
        assert shared["ocm"]["process"] == "shared"
    mask = read(runtime / "shared0.tif")
    assert (mask & 4).any() and (
        mask == 0
    ).any()  # the random model says cloud somewhere, not everywhere
    assert len(server_pids(server_log)) == 1  # one model load for every scene


def test_concurrent_jobs_share_one_server(runtime, scenes, weights):
    options = mask_options(weights["random"])
    server_log = runtime / "mask_server.log"
    results, errors = {}, []

    def job(i):
        tif, record = scenes[i % len(scenes)]
        try:
            results[i] = request_mask(
                tif, record, runtime / f"m{i}.tif", options, "d2", 1, server_log
            )
        except Exception as exc:  # noqa: BLE001 (every thread's failure is reported)
            errors.append(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(results) == 6
    assert len(server_pids(server_log)) == 1  # six jobs racing to start it started it once
    for i in range(6):
        np.testing.assert_array_equal(read(runtime / f"m{i}.tif"), read(runtime / f"m{i % 3}.tif"))


def test_a_bad_scene_fails_its_job_only(runtime, scenes, weights):
    options = mask_options(weights["random"])
    server_log = runtime / "mask_server.log"
    missing = {"id": "gone", "status": "ok"}
    with pytest.raises(MaskServerError, match="gone.tif"):
        request_mask(runtime / "gone.tif", missing, runtime / "x.tif", options, "d3", 1, server_log)
    tif, record = scenes[0]
    stats = request_mask(tif, record, runtime / "after.tif", options, "d3", 1, server_log)
    assert stats["status"] == "ok" and len(server_pids(server_log)) == 1


def test_a_killed_server_is_replaced(runtime, scenes, weights):
    options = mask_options(weights["clear"])
    server_log = runtime / "mask_server.log"
    tif, record = scenes[0]
    request_mask(tif, record, runtime / "a.tif", options, "d4", 1, server_log)
    first = server_pids(server_log)[0]
    os.kill(first, signal.SIGKILL)
    _wait_gone(first)
    assert socket_path(options, "d4", 1).exists()  # the dead server's socket file is left behind
    request_mask(tif, record, runtime / "b.tif", options, "d4", 1, server_log)
    pids = server_pids(server_log)
    assert len(pids) == 2 and pids[1] != first
    np.testing.assert_array_equal(read(runtime / "b.tif"), read(runtime / "a.tif"))


def test_an_idle_server_exits_by_itself(runtime, scenes, weights):
    """Only its leaving is observed, never that it stayed: a busy machine may take any
    time to get there, but never less than the idle time after the last answer."""
    options = mask_options(weights["clear"], idle=2)
    server_log = runtime / "mask_server.log"
    tif, record = scenes[0]
    asked = time.monotonic()
    request_mask(tif, record, runtime / "a.tif", options, "d9", 1, server_log)
    (pid,) = server_pids(server_log)
    _wait_gone(pid, timeout=300)
    assert time.monotonic() - asked >= 2  # it waited out its idle time after the scene
    assert not socket_path(options, "d9", 1).exists()
    assert "idle for 2 s: exiting" in server_log.read_text()


def test_a_server_whose_job_went_away_exits_without_waiting_out_its_idle_time(
    runtime, scenes, weights
):
    options = mask_options(weights["random"])
    server_log = runtime / "mask_server.log"
    tif, record = scenes[0]
    request_mask(tif, record, runtime / "a.tif", options, "d7", 1, server_log)
    pid = server_pids(server_log)[0]
    # a job stopped (SIGTERM) while the server works on its scene: request sent,
    # connection closed before the answer
    request = {"scene_tif": str(tif), "fetch_record": record, "mask_tif": str(runtime / "b.tif")}
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(str(socket_path(options, "d7", 1)))
        connection.sendall(json.dumps(request).encode() + b"\n")
    _wait_gone(pid, timeout=300)  # not the 600 s of its idle time (IDLE_SECONDS)
    assert "a job went away before its answer (the run stopped): exiting" in server_log.read_text()
    assert not socket_path(options, "d7", 1).exists()
    # the scene it was working on was finished, whole
    np.testing.assert_array_equal(read(runtime / "b.tif"), read(runtime / "a.tif"))


# Loaded by the shared process at start-up (PYTHONPATH): the first inference after the
# trigger file appears raises the error a GPU fault gives, as torch raises it.
DEVICE_FAULT = """
import os
from pathlib import Path

import omnicloudmask

_real = omnicloudmask.predict_from_array


def predict_from_array(*args, **kwargs):
    try:
        Path(os.environ["S2B_TEST_DEVICE_FAULT"]).unlink()
    except FileNotFoundError:
        return _real(*args, **kwargs)
    raise RuntimeError("CUDA error: an illegal memory access was encountered")


omnicloudmask.predict_from_array = predict_from_array
"""


def test_a_device_fault_fails_its_scene_only_and_the_server_is_replaced(
    runtime, scenes, weights, monkeypatch
):
    inject = runtime / "inject"
    inject.mkdir()
    (inject / "sitecustomize.py").write_text(DEVICE_FAULT)
    trigger = runtime / "fault-next-inference"
    monkeypatch.setenv("PYTHONPATH", str(inject))
    monkeypatch.setenv("S2B_TEST_DEVICE_FAULT", str(trigger))
    options = mask_options(weights["random"])
    server_log = runtime / "mask_server.log"
    expected = []
    for i, (tif, record) in enumerate(scenes):  # each scene masked in this process
        mask_scene(tif, record, runtime / f"direct{i}.tif", MaskOptions.from_config(options))
        expected.append(read(runtime / f"direct{i}.tif"))
    request_mask(*scenes[0], runtime / "warm.tif", options, "d8", 1, server_log)
    first = server_pids(server_log)[0]
    trigger.touch()
    errors, done = {}, {}

    def job(i):
        try:
            request_mask(*scenes[i], runtime / f"m{i}.tif", options, "d8", 1, server_log)
            done[i] = read(runtime / f"m{i}.tif")
        except MaskServerError as exc:
            errors[i] = str(exc)

    threads = [threading.Thread(target=job, args=(i,)) for i in range(len(scenes))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(errors) == 1, errors  # the one scene the fault met
    (message,) = errors.values()
    assert message == (
        "DeviceFault: inference failed on cpu: CUDA error: an illegal memory access was "
        "encountered (the shared mask process exits; the next job starts a new one)"
    )
    assert not (runtime / f"m{next(iter(errors))}.tif").exists()
    for i, mask in done.items():  # the others, in flight beside it, are masked as ever
        np.testing.assert_array_equal(mask, expected[i])
    _wait_gone(first)
    pids = server_pids(server_log)
    assert len(pids) == 2 and pids[0] == first
    assert "inference failed on the device: exiting" in server_log.read_text()


def test_a_server_that_cannot_start_says_why(runtime, scenes):
    options = mask_options(runtime / "no-weights")
    tif, record = scenes[0]
    with pytest.raises(MaskServerError, match="weights are missing|WeightsMissingError"):
        request_mask(tif, record, runtime / "m.tif", options, "d5", 1, runtime / "server.log")


def test_the_job_entry_point_writes_the_stats(runtime, scenes, weights):
    tif, record = scenes[1]
    (runtime / "record.json").write_text(json.dumps(record))
    for shared in (True, False):
        stats_path = runtime / f"stats-{shared}.json"
        run_mask_job(
            tif,
            runtime / "record.json",
            runtime / f"mask-{shared}.tif",
            stats_path,
            mask_options(weights["random"]),
            shared,
            "d6",
            1,
            runtime / "server.log",
        )
        assert json.loads(stats_path.read_text())["ocm"].get("process") == (
            "shared" if shared else None
        )
    np.testing.assert_array_equal(read(runtime / "mask-True.tif"), read(runtime / "mask-False.tif"))


def _wait_gone(pid: int, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        try:  # started by this process, it stays a zombie until reaped
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"process {pid} still running after {timeout} s")
