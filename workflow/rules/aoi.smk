# The AOI is the user's file, read where the run starts (on object storage too).
rule prepare_aoi:
    input:
        local(config["aoi"]),
    output:
        paths.aoi(),
    log:
        paths.log("prepare_aoi"),
    conda:
        "../../envs/geo.yaml"
    script:
        "../scripts/prepare_aoi.py"
