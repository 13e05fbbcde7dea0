from s2basemap.job import job
from s2basemap.upload import upload_period

with job(snakemake) as j:
    upload_period(list(j.input), j.period_label, j.params.settings, j.output[0])
