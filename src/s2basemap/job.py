"""The one adapter between a Snakemake job and the package.

Every workflow script reads `with job(snakemake) as j: <package function>(j.<...>)`.
The adapter sends the job's logging to the rule's log (one clear line on failure,
see `s2basemap.logs`) and rebuilds what Snakemake hands over flattened: the period,
the output grid, the AOI, the layout, the composite method, the source's signer. The convention for
outputs is the same in every rule: the package function is given its output paths
and writes them atomically; scripts never write files themselves.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from s2basemap.layout import Layout
from s2basemap.logs import logging_to

# The package modules behind each object the adapter builds. A script's code digest
# (s2basemap.provenance) counts those behind the objects it uses, not the adapter's
# every import: a search job must not rerun when the composite method's code changes.
BUILT_FROM = {
    "layout": ("layout",),
    "period": ("periods",),
    "method": ("composite",),
    "grid": ("grid",),
    "aoi": ("aoi",),
    "signer": ("signing", "sources"),
}


@dataclass
class Job:
    snakemake: Any  # the `snakemake` object of a script job
    log: Any  # the package's logger, writing to the rule's log

    @property
    def input(self):
        return self.snakemake.input

    @property
    def output(self):
        return self.snakemake.output

    @property
    def params(self):
        return self.snakemake.params

    @property
    def log_path(self) -> str:
        return self.snakemake.log[0]

    @property
    def threads(self) -> int:
        return self.snakemake.threads

    @property
    def config(self) -> dict:
        """Settings a job reads at run time without making them params (changing them
        must not rerun finished jobs: fetch retries, the source's signing)."""
        return self.snakemake.config

    @property
    def period_label(self) -> str:
        return self.snakemake.wildcards.period

    @property
    def scene_id(self) -> str:
        return self.snakemake.wildcards.scene

    @cached_property
    def layout(self) -> Layout:
        return Layout.from_config(self.config)

    @cached_property
    def period(self):
        """The job's `Period`, from its label and the `period` param's bounds."""
        from s2basemap.periods import Period

        return Period.from_bounds(self.period_label, self.params.period)

    @cached_property
    def grid(self):
        from s2basemap.grid import OutputGrid

        return OutputGrid(**self.params.grid)

    @cached_property
    def method(self):
        """The composite `Method`, from the `method` param (`config.method_settings`)."""
        from s2basemap.composite import Method

        return Method(**self.params.method)

    @cached_property
    def aoi(self):
        from s2basemap.aoi import load_aoi

        return load_aoi(self.input.aoi)

    @cached_property
    def signer(self):
        """Signs the source's hrefs at read time (Planetary Computer); a no-op for open ones."""
        from s2basemap.signing import signer_for
        from s2basemap.sources import source_of

        return signer_for(source_of(self.config["stac"]).signed)


@contextmanager
def job(snakemake) -> Iterator[Job]:
    """The job's adapter, logging to the rule's log while the block runs."""
    # numba reads its cache folder when the kernels are defined: set before the
    # script imports them, and keep it under work_dir, not in the installed package
    os.environ.setdefault("NUMBA_CACHE_DIR", Layout.from_config(snakemake.config).numba_cache())
    with logging_to(snakemake.log[0]) as log:
        yield Job(snakemake, log)
