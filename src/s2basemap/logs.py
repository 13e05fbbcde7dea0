"""Logging for workflow scripts: everything into the rule's log file, failures included."""

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
    root = logging.getLogger()
    root.addHandler(handler)
    root.addHandler(stream)
    root.setLevel(logging.INFO)
    try:
        yield logging.getLogger("s2basemap")
    except Exception:
        logging.getLogger("s2basemap").exception("failed")
        raise
    finally:
        root.removeHandler(handler)
        root.removeHandler(stream)
        handler.close()
