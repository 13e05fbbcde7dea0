import os

# numba's compile cache goes under work_dir, not into the installed package
os.environ.setdefault("NUMBA_CACHE_DIR", snakemake.params.numba_cache)

import numba

from s2basemap.aoi import load_aoi
from s2basemap.composite import composite_column, usable_scenes
from s2basemap.grid import OutputGrid
from s2basemap.logs import logging_to

with logging_to(snakemake.log[0]):
    numba.set_num_threads(snakemake.threads)
    composite_column(
        scenes=usable_scenes(snakemake.input.scenes, snakemake.input.masks),
        tile_scenes=snakemake.params.tile_scenes,
        grid=OutputGrid(**snakemake.params.grid),
        aoi=load_aoi(snakemake.input.aoi),
        percentile=snakemake.params.percentile,
        resampling=snakemake.params.resampling,
        out_path=snakemake.output[0],
        backend=snakemake.params.backend,
        threads=snakemake.threads,
    )
