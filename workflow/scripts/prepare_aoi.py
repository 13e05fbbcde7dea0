from s2basemap.aoi import read_aoi, write_aoi
from s2basemap.logs import logging_to

with logging_to(snakemake.log[0]) as log:
    aoi = read_aoi(snakemake.input[0])
    write_aoi(aoi, snakemake.output[0])
    log.info(
        "AOI %s: %s in %s, bounds %s",
        snakemake.input[0],
        aoi.geometry.geom_type,
        aoi.crs.to_string(),
        aoi.geometry.bounds,
    )
