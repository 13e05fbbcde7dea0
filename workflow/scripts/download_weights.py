from s2basemap.logs import logging_to
from s2basemap.ocm import download_weights

with logging_to(snakemake.log[0]) as log:
    paths = download_weights(snakemake.params.weights_dir, snakemake.params.version)
    log.info("OmniCloudMask weights ready: %s", ", ".join(map(str, paths)))
