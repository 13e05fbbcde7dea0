from s2basemap.job import job
from s2basemap.upload import upload_period

# the collection goes to the prefix itself, beside the months' folders it links to
with job(snakemake) as j:
    upload_period([j.input.collection], "", j.params.settings, j.output[0])
