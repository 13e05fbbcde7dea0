from datetime import date

from s2basemap.aoi import load_aoi
from s2basemap.grid import OutputGrid
from s2basemap.logs import logging_to
from s2basemap.manifest import load_json, read_manifest
from s2basemap.notify import Notifier, month_message
from s2basemap.outputs import describe_period, write_statistics
from s2basemap.periods import Period

with logging_to(snakemake.log[0]):
    bounds = snakemake.params.period
    inputs = snakemake.input
    products = ("mosaic", "counts", "quicklook")
    metadata = describe_period(
        period=Period(
            date.fromisoformat(bounds["start"]),
            date.fromisoformat(bounds["end"]),
            snakemake.wildcards.period,
        ),
        grid=OutputGrid(**snakemake.params.grid),
        aoi=load_aoi(inputs.aoi),
        manifest=read_manifest(inputs.manifest),
        summary=load_json(inputs.summary),
        record_paths=inputs.records,
        stats_paths=inputs.stats,
        settings=snakemake.params.settings,
        # a Namedlist's `in` looks at its values (paths), keys() at its names
        mosaic_files={k: inputs[k] for k in products} if "mosaic" in inputs.keys() else None,  # noqa: SIM118
        benchmarks_dir=snakemake.params.benchmarks,
        metadata_path=snakemake.output.metadata,
        item_path=snakemake.output.item,
    )
    write_statistics(metadata, snakemake.output.statistics)
    Notifier(snakemake.params.webhook_env).send(
        month_message(metadata, snakemake.params.destination)
    )
