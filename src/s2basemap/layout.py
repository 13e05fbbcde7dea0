"""Where every file of a run lives: the one owner of the layout under work_dir and results_dir.

Rule outputs, input functions and the package's readers all ask a `Layout`, so a
path is spelled here and nowhere else (in the spirit of PyPSA-Eur's path
providers). Arguments default to Snakemake's wildcards, so one method gives a
rule its pattern (`layout.scene_raster()` is `.../{period}/scenes/{scene}.tif`)
and a reader its file (`layout.scene_raster("2025-06", scene_id)`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PERIOD = "{period}"
SCENE = "{scene}"
COLUMN = "{column}"
DATES = "{dates}"

# the stages whose benchmarks add up to a period's processing_seconds
TIMED_STAGES = ("fetch", "mask", "composite")


@dataclass(frozen=True)
class Layout:
    work_dir: str
    results_dir: str
    filename_base: str

    @classmethod
    def from_config(cls, config: dict) -> Layout:
        return cls(config["work_dir"], config["results_dir"], config["output"]["filename_base"])

    # --- the run: one of each ---------------------------------------------------
    def aoi(self) -> str:
        return f"{self.work_dir}/aoi.json"

    def plan(self) -> str:
        return f"{self.work_dir}/plan.json"

    def plan_report(self) -> str:
        return f"{self.work_dir}/plan.txt"

    def outage(self) -> str:
        """The run's count of scenes failing in a row for network reasons."""
        return f"{self.work_dir}/fetch_outage.json"

    def numba_cache(self) -> str:
        return f"{self.work_dir}/.cache/numba"

    def log(self, stage: str, *keys: str) -> str:
        """A job's log: `logs/<stage>.log`, or `logs/<stage>/<key>/.../<last key>.log`."""
        return f"{self.work_dir}/logs/{'/'.join((stage, *keys))}.log"

    def benchmark(self, stage: str, period: str = PERIOD, key: str = SCENE) -> str:
        return f"{self.stage_benchmarks(stage, period)}/{key}.tsv"

    def stage_benchmarks(self, stage: str, period: str = PERIOD) -> str:
        """The folder of one stage's benchmark files for a period."""
        return f"{self.work_dir}/benchmarks/{stage}/{period}"

    def timed_benchmarks(self, period: str) -> dict[str, str]:
        """The benchmark folders whose jobs add up to a period's processing_seconds."""
        return {stage: self.stage_benchmarks(stage, period) for stage in TIMED_STAGES}

    # --- a period's work files ------------------------------------------------------
    def period_dir(self, period: str = PERIOD) -> str:
        return f"{self.work_dir}/{period}"

    def manifest(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/manifest.json"

    def sizes(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/sizes.json"

    def fetch_gate(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/fetch.gate"

    def scene_raster(self, period: str = PERIOD, scene: str = SCENE) -> str:
        return f"{self.period_dir(period)}/scenes/{scene}.tif"

    def scene_record(self, period: str = PERIOD, scene: str = SCENE) -> str:
        return f"{self.period_dir(period)}/scenes/{scene}.json"

    def failed_record(self, period: str = PERIOD, scene: str = SCENE) -> str:
        """Where a scene that could not be read is noted until it is fetched."""
        return f"{self.failed_dir(period)}/{scene}.json"

    def failed_dir(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/failed"

    def mask(self, period: str = PERIOD, scene: str = SCENE) -> str:
        return f"{self.period_dir(period)}/masks/{scene}.tif"

    def mask_stats(self, period: str = PERIOD, scene: str = SCENE) -> str:
        return f"{self.period_dir(period)}/masks/{scene}.json"

    def scene_summary(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/scenes.json"

    def column(self, period: str = PERIOD, column: str = COLUMN) -> str:
        return f"{self.period_dir(period)}/columns/{column}.tif"

    def composited(self, period: str = PERIOD) -> str:
        """The marker of a period whose columns are all composited."""
        return f"{self.period_dir(period)}/tiles.done"

    def statistics(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/statistics.tsv"

    def upload_receipt(self, period: str = PERIOD) -> str:
        return f"{self.period_dir(period)}/upload.json"

    # --- the series' results ---------------------------------------------------------
    def collection(self) -> str:
        """The STAC Collection of the published months (their Items link back to it)."""
        return f"{self.results_dir}/collection.json"

    def collection_upload_receipt(self) -> str:
        return f"{self.work_dir}/collection-upload.json"

    # --- a period's results -----------------------------------------------------------
    def metadata(self, period: str = PERIOD) -> str:
        return f"{self.results_dir}/{period}/metadata.json"

    def item(self, period: str = PERIOD) -> str:
        return f"{self.results_dir}/{period}/item.json"

    def products(self, period: str = PERIOD, dates: str = DATES) -> dict[str, str]:
        """The mosaic, count and quicklook files, named `{base}_{YYYY_MM_DD}_to_{YYYY_MM_DD}`
        like the reference system's; `dates` is `Period.filename_dates`."""
        stem = self._stem(period, dates)
        return {
            "mosaic": f"{stem}.tif",
            "counts": f"{stem}_count.tif",
            "quicklook": f"{stem}_quicklook.png",
        }

    def date_products(self, period: str = PERIOD, dates: str = DATES) -> dict[str, str]:
        """pick and medoid: the acquisition-date COG and its picture with a legend."""
        stem = self._stem(period, dates)
        return {"date": f"{stem}_date.tif", "date_picture": f"{stem}_date.svg"}

    def _stem(self, period: str, dates: str) -> str:
        return f"{self.results_dir}/{period}/{self.filename_base}_{dates}"

    def published(self, period: str) -> bool:
        """Whether a period's results are written (its metadata is the last of them)."""
        return Path(self.metadata(period)).exists()
