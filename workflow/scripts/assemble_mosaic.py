from s2basemap.grid import OutputGrid
from s2basemap.logs import logging_to
from s2basemap.outputs import assemble, column_pieces, quicklook

with logging_to(snakemake.log[0]) as log:
    grid = OutputGrid(**snakemake.params.grid)
    assemble(
        grid=grid,
        pieces=column_pieces(
            grid,
            snakemake.params.columns,
            dict(zip(snakemake.params.columns, snakemake.input.columns)),
        ),
        mosaic_path=snakemake.output.mosaic,
        count_path=snakemake.output.counts,
        compress=snakemake.params.compress,
        tags={"PERIOD": snakemake.wildcards.period},
    )
    quicklook(snakemake.output.mosaic, snakemake.output.quicklook)
    log.info("wrote %s", snakemake.output.mosaic)
