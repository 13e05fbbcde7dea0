# A period's products, metadata and STAC Item to S3-compatible storage (upload.*).
rule upload_period:
    input:
        unpack(upload_inputs),
    output:
        paths.upload_receipt(),
    log:
        paths.log("upload", "{period}"),
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/ops.yaml"
    resources:
        network=1,
    params:
        settings=config_provider("upload"),
    script:
        "../scripts/upload_period.py"
