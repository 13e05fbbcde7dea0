rule ocm_weights:
    output:
        OCM_WEIGHTS,
    log:
        paths.log("ocm_weights"),
    priority: WEIGHTS_PRIORITY
    conda:
        "../../envs/mask.yaml"
    params:
        weights_dir=lambda wildcards, output: Path(output[0]).parent,
        version=config_provider("mask", "ocm", "model_version"),
    script:
        "../scripts/download_weights.py"


rule mask_scene:
    input:
        scene=paths.scene_raster(),
        record=paths.scene_record(),
        weights=RUN_WEIGHTS,
    output:
        mask=intermediate(paths.mask()),
        stats=paths.mask_stats(),
    log:
        paths.log("mask", "{period}", "{scene}"),
    benchmark:
        paths.benchmark("mask")
    priority: sweep_priority(MASK_PRIORITY)
    conda:
        "../../envs/mask.yaml"
    # With the shared model process, a job's threads are the CPU that process
    # spends on its scene (reading, resampling, writing) while the model runs
    # on another; gpu_slots bounds the scenes in flight on the device.
    threads: 2
    resources:
        gpu_slots=1 if MASK_USES_OCM else 0,
    params:
        options=config_provider("mask"),
        code=CODE["mask"],
        shared_process=MASK_USES_OCM and config["mask"]["ocm"]["server"],
    script:
        "../scripts/mask_scene.py"


rule scene_summary:
    input:
        manifest=paths.manifest(),
        records=scene_records,
        stats=mask_stats,
    output:
        paths.scene_summary(),
    log:
        paths.log("scene_summary", "{period}"),
    conda:
        "../../envs/geo.yaml"
    params:
        max_left_out_fraction=config_provider("fetch", "max_left_out_fraction"),
    script:
        "../scripts/scene_summary.py"
