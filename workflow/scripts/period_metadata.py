from s2basemap.job import job
from s2basemap.notify import Notifier, month_message
from s2basemap.outputs import describe_period

with job(snakemake) as j:
    metadata = describe_period(j.period, j.layout, j.grid, j.aoi, j.params.settings)
    Notifier(j.params.webhook_env).send(month_message(metadata, j.params.destination))
