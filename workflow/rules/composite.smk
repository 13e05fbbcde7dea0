# One job per column of output tiles, composited a tile at a time (see
# s2basemap.composite.composite_column).
rule composite_column:
    input:
        unpack(column_inputs),
    output:
        intermediate(paths.column()),
    log:
        paths.log("composite", "{period}", "{column}"),
    benchmark:
        paths.benchmark("composite", key="{column}")
    priority: COMPOSITE_PRIORITY
    conda:
        "../../envs/composite.yaml"
    # threads read and decompress scene windows in parallel, but a job keeps
    # only 1.7 (2 threads, the development VM) to 3.6 (16 threads, a GPU box)
    # cores busy: more jobs of 2 threads fill a box best. On a GPU the gather
    # and percentile take a fraction of a second, so several tiles share the
    # device (gpu_slots, sized by the profile)
    threads: 2
    resources:
        gpu_slots=1,
    params:
        grid=asdict(GRID),
        tile_scenes=column_tile_scenes,
        method=lambda wildcards: cfg.method_settings(config, wildcards.period),
        period=period_bounds,
        # each scene's acquisition, fused per pixel before the method sees it, and
        # its time, which orders pick's and medoid's ties and dates their pixels
        scene_facts=column_scene_facts,
        resampling=composite_setting("resampling"),
        backend=config_provider("composite", "backend"),
        code=CODE["composite"],
    script:
        "../scripts/composite_column.py"


# Marks a period whose tiles are all composited; later periods' fetches wait on
# it (storage.months_in_flight), which bounds the scene rasters on disk.
rule period_composited:
    input:
        period_column_files,
    output:
        touch(paths.composited()),
    log:
        paths.log("composited", "{period}"),
    conda:
        "../../envs/geo.yaml"
    shell:
        "echo all tiles of {wildcards.period} are composited > {log}"
