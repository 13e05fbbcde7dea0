from s2basemap.grid import OutputGrid
from s2basemap.logs import logging_to
from s2basemap.outputs import assemble, quicklook

with logging_to(snakemake.log[0]) as log:
    assemble(
        grid=OutputGrid(**snakemake.params.grid),
        tiles=dict(zip(snakemake.params.tiles, snakemake.input)),
        mosaic_path=snakemake.output.mosaic,
        count_path=snakemake.output.counts,
        compress=snakemake.params.compress,
        tags={"PERIOD": snakemake.wildcards.period},
    )
    quicklook(snakemake.output.mosaic, snakemake.output.quicklook)
    log.info("wrote %s", snakemake.output.mosaic)
