from s2basemap.atomic import atomic_write_json
from s2basemap.fetch import summarise_period
from s2basemap.logs import logging_to

with logging_to(snakemake.log[0]):
    summary = summarise_period(snakemake.input.manifest, snakemake.input.records)
    atomic_write_json(snakemake.output[0], summary)
