from s2basemap.catalog import write_collection
from s2basemap.job import job

with job(snakemake) as j:
    write_collection(list(j.input.months), j.output[0], j.params.collection)
