from s2basemap.aoi import prepare_aoi
from s2basemap.job import job

with job(snakemake) as j:
    prepare_aoi(j.input[0], j.output[0])
