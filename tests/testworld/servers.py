"""Real servers on 127.0.0.1 for the test world.

RangeServer: an HTTP file server that honours Range requests (single and
multipart) and counts the body bytes it sends per path. StacServer: the
`rustac serve` STAC API as a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

RANGE = re.compile(r"(\d*)-(\d*)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


FAULT_KINDS = ("500", "503", "reset", "stall", "truncate")


class RangeServer:
    """Serves `root` over HTTP/1.1 with byte ranges; `bytes_sent[path]` counts body bytes.

    Fault injection is by request count, never by timing or chance, so a run
    sees the same faults however busy the machine is: `schedule_faults` names,
    per path, which GET (0 = the first) is answered with an HTTP 500/503, a
    connection reset, a stall that lasts until the client gives up, or a body
    cut in half. `always_fail` paths answer 503 every time. `go_down(after=n)`
    takes the whole server down after its next n requests (HEAD or GET): every
    later one gets its connection reset, as in an outage, until `come_up()`.
    `faults` counts what was injected.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.bytes_sent: Counter = Counter()
        self.requests: Counter = Counter()
        self.faults: Counter = Counter()
        self.always_fail: set[str] = set()
        self.stall_limit_seconds = 300.0  # a stall ends when the client hangs up, or at this bound
        # (path, monotonic start, monotonic end, whether the client hung up) of each stall
        self.stalls: list[tuple[str, float, float, bool]] = []
        self._schedule: dict[tuple[str, int], str] = {}
        self._gets: Counter = Counter()
        self._up_for: int | None = None  # requests left before an outage; None: no outage
        self._tokens: dict[str, int | None] | None = None  # signature -> uses left; None: open
        self._lock = threading.Lock()
        server = self

        class Handler(_RangeHandler):
            owner = server

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> RangeServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def count(self, path: str, sent: int) -> None:
        with self._lock:
            self.bytes_sent[path] += sent
            self.requests[path] += 1

    def reset_counts(self) -> None:
        with self._lock:
            self.bytes_sent.clear()
            self.requests.clear()
            self.faults.clear()

    def schedule_faults(self, schedule: dict[tuple[str, int], str]) -> None:
        """Answer GET number n of `path` with `kind` for each (path, n) -> kind; {} clears."""
        unknown = set(schedule.values()) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        with self._lock:
            self._schedule = dict(schedule)
            self._gets.clear()

    def go_down(self, after: int = 0) -> None:
        with self._lock:
            self._up_for = after

    def come_up(self) -> None:
        with self._lock:
            self._up_for = None

    def require_signatures(self) -> None:
        """Act as blob storage: only requests signed with a token from `issue_token` are served."""
        self._tokens = {}

    def issue_token(self, uses: int | None = None) -> str:
        """A new signature, good for `uses` requests (None: any number)."""
        with self._lock:
            signature = f"test-signature-{len(self._tokens) + 1}"
            self._tokens[signature] = uses
            return signature

    def accepts(self, signature: str | None) -> bool:
        with self._lock:
            if self._tokens is None:
                return True
            left = self._tokens.get(signature, 0)
            if left is None:
                return True
            if left <= 0:
                self.faults["refused"] += 1
                return False
            self._tokens[signature] = left - 1
            return True

    def down_now(self) -> bool:
        """Whether this request falls in the outage (each request counts toward its start)."""
        with self._lock:
            if self._up_for is None:
                return False
            self._up_for -= 1
            if self._up_for >= 0:
                return False
            self.faults["down"] += 1
            return True

    def draw_fault(self, method: str, path: str) -> str | None:
        with self._lock:
            if path in self.always_fail:
                kind = "503"
            elif method == "GET":
                kind = self._schedule.get((path, self._gets[path]))
                self._gets[path] += 1
            else:
                kind = None
            if kind:
                self.faults[kind] += 1
            return kind


class _RangeHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: RangeServer

    def log_message(self, *args):  # keep test output quiet
        pass

    def _path(self) -> str:
        """The request's path, also when it came through us as a proxy (absolute form)."""
        return urlsplit(self.path).path

    def _refused(self) -> bool:
        """Blob storage's answer to a missing, unknown or expired signature: 403."""
        signature = parse_qs(urlsplit(self.path).query).get("sig", [None])[0]
        if self.owner.accepts(signature):
            return False
        body = b"AuthenticationFailed: Server failed to authenticate the request."
        self.send_response(403)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body if self.command == "GET" else b"")
        return True

    def _file(self) -> Path | None:
        rel = self._path().lstrip("/")
        path = (self.owner.root / rel).resolve()
        if self.owner.root.resolve() not in path.parents or not path.is_file():
            self.send_error(404)
            return None
        return path

    def _fault(
        self, body: bytes | None = None, status: int = 200, headers: dict | None = None
    ) -> bool:
        """Act out a drawn fault; True when the request was answered (or broken) by it."""
        kind = self.owner.draw_fault(self.command, self._path())
        if kind is None:
            return False
        if kind in ("500", "503"):
            self.send_response(int(kind))
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif kind == "reset":
            self._reset()
        elif kind == "stall":
            self._stall()
        elif kind == "truncate":
            data = body if body is not None else b"x" * 1024
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
        return True

    def _reset(self) -> None:
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def _stall(self) -> None:
        """Send nothing until the client hangs up: a stall outlasts any client timeout."""
        started = time.monotonic()
        deadline = started + self.owner.stall_limit_seconds
        hung_up = False
        self.connection.settimeout(1.0)
        while time.monotonic() < deadline:
            try:
                if not self.connection.recv(1024):
                    hung_up = True
                    break
            except TimeoutError:
                continue
            except OSError:
                hung_up = True
                break
        self.owner.stalls.append((self._path(), started, time.monotonic(), hung_up))
        self.close_connection = True

    def do_HEAD(self):
        if self.owner.down_now():
            self._reset()
            return
        if self._refused() or self._fault():
            return
        path = self._file()
        if path:
            self.send_response(200)
            self.send_header("Content-Length", str(path.stat().st_size))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "image/tiff")
            self.end_headers()

    def do_GET(self):
        self._last_body = 0
        if self.owner.down_now():
            self._reset()
            return
        if self._refused():
            return
        path = self._file()
        if not path:
            return
        data = path.read_bytes()
        ranges = parse_ranges(self.headers.get("Range"), len(data))
        if ranges:
            start, end = ranges[0]
            partial = {"Content-Range": f"bytes {start}-{end}/{len(data)}"}
            if self._fault(data[start : end + 1], 206, partial):
                return
        elif self._fault(data):
            return
        size = len(data)
        ranges = parse_ranges(self.headers.get("Range"), size)
        if ranges is None:
            self._send(200, data, {"Content-Type": "image/tiff"})
        elif not ranges:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif len(ranges) == 1:
            start, end = ranges[0]
            self._send(
                206,
                data[start : end + 1],
                {"Content-Type": "image/tiff", "Content-Range": f"bytes {start}-{end}/{size}"},
            )
        else:
            boundary = "s2basemap-test-boundary"
            parts = []
            for start, end in ranges:
                parts.append(
                    f"--{boundary}\r\nContent-Type: image/tiff\r\n"
                    f"Content-Range: bytes {start}-{end}/{size}\r\n\r\n".encode()
                )
                parts.append(data[start : end + 1] + b"\r\n")
            parts.append(f"--{boundary}--\r\n".encode())
            self._send(
                206, b"".join(parts), {"Content-Type": f"multipart/byteranges; boundary={boundary}"}
            )
        self.owner.count(self._path(), self._last_body)

    def _send(self, code: int, body: bytes, headers: dict) -> None:
        self.send_response(code)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self._last_body = len(body)


def parse_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """[(start, end)] inclusive, [] when unsatisfiable, None when there is no Range header."""
    if not header or not header.startswith("bytes="):
        return None
    ranges = []
    for spec in header.removeprefix("bytes=").split(","):
        match = RANGE.fullmatch(spec.strip())
        if not match:
            return None
        first, last = match.groups()
        if first == "":
            start, end = max(size - int(last), 0), size - 1
        else:
            start, end = int(first), min(int(last) if last else size - 1, size - 1)
        if start < size and start <= end:
            ranges.append((start, end))
    return ranges


class StacServer:
    """`rustac serve` on a free port, loaded with the world's collections and items."""

    def __init__(self, files: list[Path], log_path: Path, port: int | None = None):
        exe = shutil.which("rustac")
        if exe is None:
            raise RuntimeError("rustac is not installed: pip install rustac (see the README)")
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = open(log_path, "a")  # noqa: SIM115 (open while the server runs; closed in stop())
        env = {**os.environ, "RUST_LOG": "warn"}
        self.proc = subprocess.Popen(
            [exe, "serve", "--addr", f"127.0.0.1:{self.port}", *map(str, files)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=env,
        )

    def wait_ready(self, timeout: float = 60.0) -> StacServer:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rustac serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"{self.url}/collections", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"rustac serve did not answer on {self.url} within {timeout} s")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


class WebhookReceiver:
    """A Slack-like incoming webhook on 127.0.0.1 that records every JSON body."""

    def __init__(self, status: int = 200):
        self.messages: list[dict] = []
        self.paths: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.paths.append(self.path)
                receiver.messages.append(json.loads(body or b"{}"))
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> WebhookReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def texts(self) -> list[str]:
        return [m.get("text", "") for m in self.messages]


class TokenServer:
    """Planetary Computer's SAS token endpoint on 127.0.0.1, for the SDK's PC_SDK_SAS_URL.

    `GET /api/sas/v1/token/<account>/<container>` answers a token the storage
    (`storage`, a RangeServer requiring signatures) accepts for `uses_per_token[i]`
    requests (the i-th token; later ones without limit). `requests` counts tokens
    issued; `keys` records the subscription key header each request carried.
    """

    def __init__(self, storage: RangeServer, uses_per_token: tuple = ()):
        self.storage = storage
        self.uses_per_token = list(uses_per_token)
        self.paths: list[str] = []
        self.keys: list[str | None] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.paths.append(self.path)
                server.keys.append(self.headers.get("Ocp-Apim-Subscription-Key"))
                index = len(server.paths) - 1
                uses = server.uses_per_token[index] if index < len(server.uses_per_token) else None
                signature = server.storage.issue_token(uses)
                token = (
                    f"st=2022-01-01T00%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sp=rl&sv=2021-06-08"
                    f"&sr=c&skoid=test&sig={signature}"
                )
                body = json.dumps({"msft:expiry": "2099-01-01T00:00:00Z", "token": token}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/api/sas/v1/token"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self) -> TokenServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class S3Server:
    """moto's S3 on 127.0.0.1, which can hold one upload: `hold_next_put(bucket)` makes
    the next PUT into `bucket` wait, without reading its body, until `release()`; `held`
    is set once one waits. A stop during an upload is then triggered by a request, not
    by timing; the held PUT is answered 503 and stores nothing."""

    def __init__(self):
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self._hold: str | None = None
        self.requests = Counter()  # by HTTP method, for the cost of a run's storage
        self._counting = threading.Lock()
        self.held = threading.Event()
        self._release = threading.Event()
        app = self._wsgi(DomainDispatcherApplication(create_backend_app))
        self._httpd = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def _wsgi(self, app):
        def holding(environ, start_response):
            with self._counting:
                self.requests[environ["REQUEST_METHOD"]] += 1
            hold = self._hold
            if (
                hold
                and environ["REQUEST_METHOD"] == "PUT"
                and environ["PATH_INFO"].startswith(hold)
            ):
                self._hold = None
                self.held.set()
                self._release.wait(600)
                start_response("503 Service Unavailable", [("Content-Length", "0")])
                return [b""]
            return app(environ, start_response)

        return holding

    def hold_next_put(self, bucket: str) -> None:
        self.held.clear()
        self._release.clear()
        self._hold = f"/{bucket}/"

    def release(self) -> None:
        self._release.set()

    def start(self) -> S3Server:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.release()
        self._httpd.shutdown()
        self._httpd.server_close()
