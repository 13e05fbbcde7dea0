rule ocm_weights:
    output:
        OCM_WEIGHTS,
    log:
        f"{LOGS}/ocm_weights.log",
    priority: WEIGHTS_PRIORITY
    conda:
        "../../envs/mask.yaml"
    params:
        weights_dir=lambda wildcards, output: Path(output[0]).parent,
        version=config["mask"]["ocm"]["model_version"],
    script:
        "../scripts/download_weights.py"


rule mask_scene:
    input:
        scene=f"{WORK}/{{period}}/scenes/{{scene}}.tif",
        record=f"{WORK}/{{period}}/scenes/{{scene}}.json",
        weights=OCM_WEIGHTS if MASK_USES_OCM else [],
    output:
        mask=intermediate(f"{WORK}/{{period}}/masks/{{scene}}.tif"),
        stats=f"{WORK}/{{period}}/masks/{{scene}}.json",
    log:
        f"{LOGS}/mask/{{period}}/{{scene}}.log",
    benchmark:
        f"{BENCHMARKS}/mask/{{period}}/{{scene}}.tsv"
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
        options=config["mask"],
        code=CODE["mask"],
        shared_process=MASK_USES_OCM and config["mask"]["ocm"]["server"],
        server_log=f"{LOGS}/mask_server.log",
    script:
        "../scripts/mask_scene.py"


rule scene_summary:
    input:
        manifest=lambda wildcards: manifest_path(wildcards.period),
        records=lambda wildcards: period_files(wildcards, "scenes/{scene}.json"),
        stats=lambda wildcards: period_files(wildcards, "masks/{scene}.json"),
    output:
        f"{WORK}/{{period}}/scenes.json",
    log:
        f"{LOGS}/scene_summary/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    params:
        max_left_out_fraction=config["fetch"]["max_left_out_fraction"],
    script:
        "../scripts/scene_summary.py"
