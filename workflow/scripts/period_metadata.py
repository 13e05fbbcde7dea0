from s2basemap.catalog import write_month_item
from s2basemap.job import job
from s2basemap.notify import Notifier, month_message
from s2basemap.outputs import PRODUCT_FILES, PeriodFiles, describe_period, processing_seconds

with job(snakemake) as j:
    named = dict(j.input.items())  # a NamedList: `in` would look at its values
    files = PeriodFiles(
        manifest=j.input.manifest,
        summary=j.input.summary,
        records=list(j.input.records),
        stats=list(j.input.stats),
        products={key: named[key] for key in PRODUCT_FILES if key in named},
        metadata=j.output.metadata,
        item=j.output.item,
        statistics=j.output.statistics,
    )
    metadata = describe_period(
        j.period,
        j.grid,
        j.aoi,
        j.params.settings,
        files,
        processing_seconds(j.params.benchmarks),
    )
    write_month_item(
        metadata,
        j.aoi.geometry_4326,
        j.output.item,
        j.params.collection,
        j.params.collection_href,
    )
    Notifier(j.params.webhook_env).send(month_message(metadata, j.params.destination))
