rule composite_tile:
    input:
        unpack(tile_inputs),
    output:
        intermediate(f"{WORK}/{{period}}/tiles/{{tile}}.tif"),
    log:
        f"{LOGS}/composite/{{period}}/{{tile}}.log",
    benchmark:
        f"{BENCHMARKS}/composite/{{period}}/{{tile}}.tsv"
    priority: COMPOSITE_PRIORITY
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


# Marks a period whose tiles are all composited; later periods' fetches wait on
# it (storage.months_in_flight), which bounds the scene rasters on disk.
rule period_composited:
    input:
        period_tile_files,
    output:
        touch(f"{WORK}/{{period}}/tiles.done"),
    log:
        f"{LOGS}/composited/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    shell:
        "echo all tiles of {wildcards.period} are composited > {log}"
