from s2basemap.job import job
from s2basemap.ocm import download_weights

with job(snakemake) as j:
    paths = download_weights(j.params.weights_dir, j.params.version)
    j.log.info("OmniCloudMask weights ready: %s", ", ".join(map(str, paths)))
