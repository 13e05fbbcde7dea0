"""SIGTERM stops a run instead of hanging it: a workaround for Snakemake 9's handler.

SLURM at a job's time limit, a spot reclaim and `systemctl stop` send SIGTERM to every
process of the run. Snakemake's scheduler handles it in `JobScheduler.exit_gracefully`,
which takes the scheduler's `threading.Lock`. Python runs a signal handler in the main
thread, between two bytecodes of whatever that thread was doing. When the main thread
was inside one of the scheduling loop's `with self._lock:` blocks, the handler waits for
a lock that its own thread holds: the run hangs for good, with its locks held. That is
the hang seen once in the 12-month simulation of 2026-11-25 (Snakemake 9.27.1), and
`tests/test_stopping.py` shows it deterministically.

The handler installed here does the same from a thread of its own, which waits for
the lock like any other thread, so the main thread always gets back to the loop.
"""

from __future__ import annotations

import threading

_MARK = "_s2basemap_sigterm"


def install_sigterm_workaround() -> bool:
    """Make Snakemake's SIGTERM handler safe; True if it is (or already was) replaced.

    It must run before Snakemake builds its scheduler, which binds the handler: the
    Snakefile's parse in the main process is such a moment.
    """
    try:
        from snakemake.scheduling.job_scheduler import JobScheduler
    except ImportError:  # another layout of Snakemake's internals: leave it be
        return False
    handler = JobScheduler.exit_gracefully
    if getattr(handler, _MARK, False):
        return True

    def exit_gracefully(self, *args):
        threading.Thread(
            target=handler, args=(self, *args), name="snakemake-sigterm", daemon=True
        ).start()

    setattr(exit_gracefully, _MARK, True)
    exit_gracefully.__doc__ = handler.__doc__
    JobScheduler.exit_gracefully = exit_gracefully
    return True
