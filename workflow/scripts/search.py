from s2basemap.job import job
from s2basemap.search import run_search

with job(snakemake) as j:
    run_search(aoi=j.aoi, period=j.period, stac=j.params.stac, manifest_path=j.output.manifest)
