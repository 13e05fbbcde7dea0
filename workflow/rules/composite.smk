rule composite_tile:
    input:
        unpack(tile_inputs),
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
