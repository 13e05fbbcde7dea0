checkpoint search:
    input:
        aoi=rules.prepare_aoi.output[0],
    output:
        manifest=f"{WORK}/{{period}}/manifest.json",
    log:
        f"{LOGS}/search/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    params:
        stac=config["stac"],
        period=period_bounds,
    script:
        "../scripts/search.py"
