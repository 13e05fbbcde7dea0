from s2basemap.atomic import atomic_write_json
from s2basemap.failures import vet_month
from s2basemap.logs import logging_to
from s2basemap.manifest import summarise_period

with logging_to(snakemake.log[0]):
    vet_month(
        snakemake.wildcards.period,
        snakemake.input.records,
        snakemake.params.max_left_out_fraction,
    )
    summary = summarise_period(
        snakemake.input.manifest, snakemake.input.records, snakemake.input.stats
    )
    atomic_write_json(snakemake.output[0], summary)
