rule fetch_scene:
    input:
        aoi=rules.prepare_aoi.output[0],
    output:
        tif=(
            f"{WORK}/{{period}}/scenes/{{scene}}.tif"
            if KEEP_SCENE_RASTERS
            else temp(f"{WORK}/{{period}}/scenes/{{scene}}.tif")
        ),
        record=f"{WORK}/{{period}}/scenes/{{scene}}.json",
    log:
        f"{LOGS}/fetch/{{period}}/{{scene}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/{{period}}/{{scene}}.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        network=1,
    params:
        scene=scene_fetch_spec,
        options=config["fetch"],
        code=CODE["fetch"],
    script:
        "../scripts/fetch_scene.py"
