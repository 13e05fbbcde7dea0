rule prepare_aoi:
    input:
        config["aoi"],
    output:
        f"{WORK}/aoi.json",
    log:
        f"{LOGS}/prepare_aoi.log",
    conda:
        "../../envs/geo.yaml"
    script:
        "../scripts/prepare_aoi.py"
