rule fetch_scene:
    input:
        aoi=rules.prepare_aoi.output[0],
    output:
        tif=f"{WORK}/{{period}}/scenes/{{scene}}.tif",
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
    script:
        "../scripts/fetch_scene.py"


rule fetch_summary:
    input:
        manifest=lambda wildcards: manifest_path(wildcards.period),
        records=lambda wildcards: expand(
            f"{WORK}/{wildcards.period}/scenes/{{scene}}.json",
            scene=period_scenes(wildcards),
        ),
    output:
        f"{WORK}/{{period}}/fetched.json",
    log:
        f"{LOGS}/fetch_summary/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    script:
        "../scripts/fetch_summary.py"
