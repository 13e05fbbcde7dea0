"""One OmniCloudMask process per machine, shared by every mask job.

Starting a mask job costs seconds before the first pixel: importing torch and
the model code, loading the weights, waking the GPU. Paid per scene, that is
more than the inference of a typical scene. So the first mask job starts a
server that keeps the model loaded; every mask job, this one included, sends
its scene there over a Unix socket and waits for the answer. The per-scene jobs,
their outputs, logs and records stay exactly as they are.

The server reads, resamples and writes several scenes at once (one thread per
job that sent one) and runs the model on one at a time, so the device never
waits for a read. It exits after `server_idle_seconds` without work, or as soon
as it has none once a job went away before its answer: the run was stopped (SIGTERM
reaches the run's jobs, not this process, which has a session of its own), and the
model must not hold the GPU for a run that is gone. A server that died, or left, is
replaced by the next job that finds it gone.
"""

from __future__ import annotations

import argparse
import fcntl
import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from contextlib import contextmanager
from dataclasses import asdict, replace
from pathlib import Path

log = logging.getLogger(__name__)

START_TIMEOUT = 600.0  # seconds for a new server to load the model and listen
MAX_SOCKET_PATH = 90  # bytes; the limit is 108, and binding uses a longer temporary name
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
DEVICE_FAULT_EXIT = 70  # EX_SOFTWARE: the server left after a device fault


class MaskServerError(RuntimeError):
    """The shared model process failed, or could not be started; the message says why."""


def socket_path(options: dict, digest: str, threads: int = 1) -> Path:
    """The socket of the server for these mask options, code, threads and Python, on this machine.

    Jobs with other options, other code or another environment get a server of
    their own. The path stays short: Unix socket paths are limited to ~100 bytes.
    """
    key = json.dumps([options, digest, threads, sys.executable], sort_keys=True)
    name = f"mask-{hashlib.sha256(key.encode()).hexdigest()[:16]}.sock"
    root = Path(os.environ.get("S2BASEMAP_RUNTIME_DIR") or tempfile.gettempdir())
    directory = root / f"s2basemap-{os.getuid()}"
    if len(str(directory / name)) > MAX_SOCKET_PATH:
        directory = Path("/tmp") / f"s2basemap-{os.getuid()}"
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    return directory / name


def shared_process_possible() -> bool:
    """A SLURM job's processes end with the job, so a server there cannot outlive it."""
    return "SLURM_JOB_ID" not in os.environ


# --- the client: what a mask job runs -------------------------------------------------------


def run_mask_job(
    scene_tif,
    record_json,
    mask_tif,
    stats_json,
    options: dict,
    shared: bool,
    digest: str,
    threads: int,
    server_log,
) -> dict:
    """One mask job: through the shared process when asked for and possible, else in this one.

    Only the in-process path imports torch: a job that uses the shared process
    starts in a fraction of a second.
    """
    from s2basemap.atomic import atomic_write_json
    from s2basemap.manifest import load_json

    record = load_json(record_json)
    if shared and shared_process_possible():
        stats = request_mask(scene_tif, record, mask_tif, options, digest, threads, server_log)
    else:
        from s2basemap.masks import MaskOptions, mask_scene

        mask_options = MaskOptions.from_config(options)
        if mask_options.uses_ocm:  # importing torch costs ~1.5 s a job; SCL masks need none
            import torch

            torch.set_num_threads(threads)
        stats = mask_scene(scene_tif, record, mask_tif, mask_options)
    atomic_write_json(stats_json, stats)
    return stats


def request_mask(
    scene_tif, fetch_record: dict, mask_tif, options: dict, digest: str, threads: int, server_log
) -> dict:
    """Have the shared server mask one scene; start the server if there is none.

    Returns the scene's mask statistics. The server's log lines for this scene
    are logged here too, so the job's log reads as if the job did the work.
    """
    path = socket_path(options, digest, threads)
    request = {
        "scene_tif": str(Path(scene_tif).resolve()),
        "fetch_record": fetch_record,
        "mask_tif": str(Path(mask_tif).resolve()),
    }
    # A server may exit (idle) or die just as the request arrives: then one more
    # try, with a new server. The mask is written atomically, so a repeat is safe.
    for attempt in (1, 2):
        try:
            connection = _connect(path)
        except OSError:
            connection = _start_server(path, options, threads, server_log)
        try:
            with connection:
                connection.sendall(json.dumps(request).encode() + b"\n")
                answer = _read_line(connection)
        except OSError:
            answer = b""
        if answer:
            break
        log.warning("the shared mask process went away during the request (try %d of 2)", attempt)
    else:
        raise MaskServerError(
            f"the shared mask process ended twice while masking "
            f"{request['scene_tif']}: {_tail(server_log)}"
        )
    reply = json.loads(answer)
    for line in reply.get("log", []):
        log.info("[shared mask process] %s", line)
    if not reply["ok"]:
        failed = MaskServerError(reply["error"])
        # the job's log shows where it failed in the server; its console, one line
        failed.add_note(f"in the shared mask process:\n{reply['traceback']}")
        raise failed
    return reply["stats"]


def _connect(path: Path) -> socket.socket:
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(path))
    except OSError:
        connection.close()
        raise
    return connection


def _read_line(connection: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = connection.recv(1 << 16)
        if not chunk:
            break
        chunks.append(chunk)
        if chunk.endswith(b"\n"):
            break
    return b"".join(chunks)


@contextmanager
def _locked(path: Path):
    with open(path.with_suffix(".lock"), "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _start_server(path: Path, options: dict, threads: int, server_log) -> socket.socket:
    """Start the server unless another job just did, and connect to it."""
    with _locked(path):
        try:
            return _connect(path)
        except OSError:
            path.unlink(missing_ok=True)  # a server that died leaves its socket file
        Path(server_log).parent.mkdir(parents=True, exist_ok=True)
        with open(server_log, "a") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "s2basemap.maskserver",
                    "--socket",
                    str(path),
                    "--options",
                    json.dumps(options),
                    "--threads",
                    str(threads),
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives this job; exits when idle
                env={
                    **os.environ,
                    "PYTHONPATH": os.pathsep.join(
                        [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]
                    ),
                },
            )
        log.info("started the shared mask process (pid %d, log %s)", process.pid, server_log)
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise MaskServerError(
                    f"the shared mask process exited with {process.returncode} "
                    f"while starting: {_tail(server_log)}"
                )
            try:
                return _connect(path)
            except OSError:
                time.sleep(0.05)
        process.kill()
        raise MaskServerError(
            f"the shared mask process did not start within {START_TIMEOUT:.0f} s; see {server_log}"
        )


def _tail(server_log) -> str:
    """The server log's last error line, and where the rest is."""
    lines = (
        Path(server_log).read_text(errors="replace").strip().splitlines()
        if Path(server_log).exists()
        else []
    )
    last = next(
        (line for line in reversed(lines) if "Error" in line or "error" in line),
        lines[-1] if lines else "no output",
    )
    return f"{last.strip()} (log: {server_log})"


# --- the server ------------------------------------------------------------------------------


class ThreadLog(logging.Handler):
    """Collects the log lines of one request (one handler thread)."""

    def __init__(self):
        super().__init__()
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and getattr(record, "relay", True):
            self.lines.append(record.getMessage())


class MaskServer:
    def __init__(self, path: Path, options: dict, idle_seconds: float):
        from s2basemap.masks import MaskOptions

        self.path = path
        self.options = MaskOptions.from_config(options)
        self.idle_seconds = idle_seconds
        self.device_lock = threading.Lock()
        self.active = 0
        self.last_done = time.monotonic()
        self.state = threading.Lock()
        self.inode = None
        self.abandoned = False  # a job went away before its answer: the run is stopping

    def warm_up(self) -> None:
        """Load the model (and wake the device) before the first scene arrives."""
        import numpy as np

        from s2basemap.ocm import predict

        factor = self.options.ocm.inference_resolution // 10
        small = replace(self.options.ocm, patch_size=64, patch_overlap=0)  # same cached models
        predict(np.full((3, 64 * factor, 64 * factor), 500, dtype=np.uint16), small)

    def handle(self, connection: socket.socket) -> None:
        from s2basemap.masks import mask_scene
        from s2basemap.ocm import DeviceFault

        capture = ThreadLog()
        logging.getLogger().addHandler(capture)
        fault = False
        try:
            request = json.loads(_read_line(connection))
            log.info("masking %s", request["scene_tif"], extra={"relay": False})  # server log only
            stats = mask_scene(
                request["scene_tif"],
                request["fetch_record"],
                request["mask_tif"],
                self.options,
                device_lock=self.device_lock,
            )
            if "ocm" in stats:
                stats["ocm"]["process"] = "shared"
            reply = {"ok": True, "stats": stats}
        except Exception as exc:  # the job reports it; the server goes on with other scenes
            log.exception("request failed")
            fault = isinstance(exc, DeviceFault)
            reply = {
                "ok": False,
                "error": f"{type(exc).__name__}: {exc}"
                + (" (the shared mask process exits; the next job starts a new one)" * fault),
                "traceback": traceback.format_exc(),
            }
        finally:
            logging.getLogger().removeHandler(capture)
        reply["log"] = capture.lines
        try:
            connection.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            log.warning("the job that sent this scene is gone; its mask is written anyway")
            with self.state:
                self.abandoned = True
        finally:
            connection.close()
            with self.state:
                self.active -= 1
                self.last_done = time.monotonic()
        if fault:
            self._exit_after_device_fault()

    def _exit_after_device_fault(self) -> None:
        """Leave at once: the device may be unusable for this process. The jobs of the
        other scenes in flight see the connection close and retry with a new server."""
        log.error("inference failed on the device: exiting so that a new process takes over")
        self._remove_socket()
        logging.shutdown()
        os._exit(DEVICE_FAULT_EXIT)

    def idle(self) -> bool:
        with self.state:
            waited = time.monotonic() - self.last_done
            return self.active == 0 and (self.abandoned or waited > self.idle_seconds)

    def serve(self) -> None:
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        # bind under a temporary name, then rename: a job sees no socket or a listening one
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}")
        temporary.unlink(missing_ok=True)
        listener.bind(str(temporary))
        listener.listen(64)
        os.replace(temporary, self.path)
        self.inode = os.stat(self.path).st_ino
        listener.settimeout(1.0)
        self.last_done = time.monotonic()  # idle from now, not from before the model loaded
        log.info("listening on %s (pid %d)", self.path, os.getpid())
        try:
            while not self.idle():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                connection.settimeout(None)
                with self.state:
                    self.active += 1
                threading.Thread(target=self.handle, args=(connection,), daemon=True).start()
        finally:
            self._release(listener)
        if self.abandoned:
            log.info("a job went away before its answer (the run stopped): exiting")
        else:
            log.info("idle for %.0f s: exiting", self.idle_seconds)

    def _release(self, listener: socket.socket) -> None:
        self._remove_socket()
        listener.close()

    def _remove_socket(self) -> None:
        """Remove the socket file, unless a newer server already owns the path."""
        try:
            if os.stat(self.path).st_ino == self.inode:
                self.path.unlink()
        except OSError:
            pass


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description="the shared OmniCloudMask process of s2basemap")
    parser.add_argument("--socket", required=True)
    parser.add_argument("--options", required=True, help="the mask options as JSON")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, stream=sys.stdout)
    import torch

    torch.set_num_threads(max(1, args.threads))
    options = json.loads(args.options)
    server = MaskServer(Path(args.socket), options, float(options["ocm"]["server_idle_seconds"]))
    started = time.perf_counter()
    server.warm_up()
    log.info(
        "model loaded in %.1f s (%s)",
        time.perf_counter() - started,
        json.dumps(asdict(server.options.ocm)),
    )
    server.serve()


if __name__ == "__main__":
    main()
