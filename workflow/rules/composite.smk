rule composite_tile:
    input:
        aoi=rules.prepare_aoi.output[0],
        scenes=lambda wildcards: tile_scene_files(wildcards, "scenes/{scene}.tif"),
        masks=lambda wildcards: tile_scene_files(wildcards, "masks/{scene}.tif"),
        stats=lambda wildcards: tile_scene_files(wildcards, "masks/{scene}.json"),
    output:
        f"{WORK}/{{period}}/tiles/{{tile}}.tif",
    log:
        f"{LOGS}/composite/{{period}}/{{tile}}.log",
    benchmark:
        f"{BENCHMARKS}/composite/{{period}}/{{tile}}.tsv"
    conda:
        "../../envs/composite.yaml"
    # threads read and decompress scene windows in parallel; on a GPU the
    # gather and percentile take a fraction of a second, so several tiles
    # share the device (gpu_slots, sized by the profile)
    threads: 4
    resources:
        gpu_slots=1,
    params:
        grid=asdict(GRID),
        percentile=composite_setting("percentile"),
        resampling=composite_setting("resampling"),
        backend=config["composite"]["backend"],
        code=CODE["composite"],
        numba_cache=f"{WORK}/.cache/numba",
    script:
        "../scripts/composite_tile.py"
