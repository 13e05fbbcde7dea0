from s2basemap.atomic import atomic_write_json
from s2basemap.logs import logging_to
from s2basemap.upload import upload_period

with logging_to(snakemake.log[0]):
    receipts = upload_period(
        files=list(snakemake.input),
        period=snakemake.wildcards.period,
        settings=snakemake.params.settings,
    )
    atomic_write_json(
        snakemake.output[0], {"period": snakemake.wildcards.period, "objects": receipts}
    )
