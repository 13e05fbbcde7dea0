from s2basemap.aoi import load_aoi
from s2basemap.atomic import atomic_write_json
from s2basemap.fetch import FetchOptions, fetch_scene
from s2basemap.logs import logging_to

with logging_to(snakemake.log[0]):
    record = fetch_scene(
        spec=snakemake.params.scene,
        aoi=load_aoi(snakemake.input.aoi),
        tif_path=snakemake.output.tif,
        options=FetchOptions.from_config(snakemake.params.options),
    )
    atomic_write_json(snakemake.output.record, record)
