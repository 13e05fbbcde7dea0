from s2basemap.aoi import load_aoi
from s2basemap.atomic import atomic_write_json
from s2basemap.logs import logging_to
from s2basemap.manifest import read_manifest
from s2basemap.signing import signer_for
from s2basemap.sources import source_of
from s2basemap.storage import size_scenes

with logging_to(snakemake.log[0]):
    sizes = size_scenes(
        read_manifest(snakemake.input.manifest),
        load_aoi(snakemake.input.aoi),
        signer_for(source_of(snakemake.config["stac"]).signed),
    )
    atomic_write_json(snakemake.output[0], sizes)
