rule prepare_aoi:
    input:
        config["aoi"],
    output:
        paths.aoi(),
    log:
        paths.log("prepare_aoi"),
    conda:
        "../../envs/geo.yaml"
    script:
        "../scripts/prepare_aoi.py"
