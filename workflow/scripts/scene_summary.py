from s2basemap.atomic import atomic_write_json
from s2basemap.logs import logging_to
from s2basemap.manifest import summarise_period

with logging_to(snakemake.log[0]):
    summary = summarise_period(
        snakemake.input.manifest, snakemake.input.records, snakemake.input.stats
    )
    atomic_write_json(snakemake.output[0], summary)
