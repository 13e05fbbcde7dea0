from s2basemap.aoi import load_aoi
from s2basemap.fetch import FetchOptions, fetch_scene_job
from s2basemap.logs import logging_to
from s2basemap.signing import signer_for
from s2basemap.sources import source_of

with logging_to(snakemake.log[0]):
    fetch_scene_job(
        spec=snakemake.params.scene,
        aoi=load_aoi(snakemake.input.aoi),
        tif_path=snakemake.output.tif,
        record_path=snakemake.output.record,
        # how hard to try is read from the config, not from params: changing it
        # must not refetch scenes already fetched
        options=FetchOptions.from_config(snakemake.config["fetch"]),
        outage_path=snakemake.params.outage,
        signer=signer_for(source_of(snakemake.config["stac"]).signed),
    )
