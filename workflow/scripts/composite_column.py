from s2basemap.job import job

with job(snakemake) as j:
    # imported after the adapter set numba's cache folder, which numba reads as the kernels load
    from s2basemap.composite import composite_column_job

    composite_column_job(
        tile_scenes=j.params.tile_scenes,
        scene_tifs=j.input.scenes,
        mask_tifs=j.input.masks,
        grid=j.grid,
        aoi=j.aoi,
        method=j.method,
        resampling=j.params.resampling,
        out_path=j.output[0],
        backend=j.params.backend,
        threads=j.threads,
        period=j.period,
        scene_facts=j.params.scene_facts,
    )
