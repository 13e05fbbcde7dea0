from s2basemap.aoi import load_aoi
from s2basemap.logs import logging_to
from s2basemap.search import run_search

with logging_to(snakemake.log[0]):
    run_search(
        aoi=load_aoi(snakemake.input.aoi),
        period_label=snakemake.wildcards.period,
        period_bounds=snakemake.params.period,
        stac=snakemake.params.stac,
        manifest_path=snakemake.output.manifest,
    )
