from s2basemap.job import job
from s2basemap.manifest import read_manifest
from s2basemap.storage import write_scene_sizes

with job(snakemake) as j:
    write_scene_sizes(read_manifest(j.input.manifest), j.aoi, j.signer, j.output[0])
