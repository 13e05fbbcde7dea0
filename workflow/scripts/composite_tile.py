import os

# numba's compile cache goes under work_dir, not into the installed package
os.environ.setdefault("NUMBA_CACHE_DIR", snakemake.params.numba_cache)

import json
from pathlib import Path

import numba

from s2basemap.aoi import load_aoi
from s2basemap.composite import SceneInput, composite_tile
from s2basemap.grid import OutputGrid
from s2basemap.logs import logging_to

with logging_to(snakemake.log[0]):
    numba.set_num_threads(snakemake.threads)
    usable = [
        SceneInput(stats["id"], tif, mask)
        for tif, mask, stats in zip(
            snakemake.input.scenes,
            snakemake.input.masks,
            (json.loads(Path(p).read_text()) for p in snakemake.input.stats),
        )
        if stats["status"] == "ok"
    ]
    composite_tile(
        scenes=usable,
        grid=OutputGrid(**snakemake.params.grid),
        tile_id=snakemake.wildcards.tile,
        aoi=load_aoi(snakemake.input.aoi),
        percentile=snakemake.params.percentile,
        resampling=snakemake.params.resampling,
        out_path=snakemake.output[0],
        backend=snakemake.params.backend,
        threads=snakemake.threads,
    )
