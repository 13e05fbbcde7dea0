"""Logging for workflow scripts: everything into the rule's log file, failures included.

The console gets the package's own messages and, when a job fails, one line
that says why and where the traceback is: a failed run's output stays readable.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


@contextmanager
def logging_to(path):
    """Send all logging (and uncaught exceptions) to `path` while the block runs."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(FORMAT))
    stream = logging.StreamHandler(sys.stderr)
    stream.setFormatter(logging.Formatter(FORMAT))
    stream.addFilter(logging.Filter("s2basemap"))  # libraries' retries and warnings: the file only
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(stream)
    root.setLevel(logging.INFO)
    try:
        yield logging.getLogger("s2basemap")
    except Exception as exc:
        root.removeHandler(stream)
        logging.getLogger("s2basemap").exception("failed")
        print(failure_line(exc, path), file=sys.stderr, flush=True)
        raise SystemExit(1) from None
    finally:
        root.removeHandler(handler)
        root.removeHandler(stream)
        handler.close()


def failure_line(exc: BaseException, log_path) -> str:
    """`ERROR <why> (traceback in <log>)` on one line; the package's own errors say
    what failed, anything else is named by its type."""
    why = " ".join(str(exc).split()) or "no message"
    if not type(exc).__module__.startswith("s2basemap"):
        why = f"{type(exc).__name__}: {why}"
    return f"ERROR {why} (traceback in {log_path})"
