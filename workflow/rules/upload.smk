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


# the Collection beside the months' folders, once the Items it links to are there
rule upload_collection:
    input:
        collection=paths.collection(),
        months=[paths.upload_receipt(period) for period in PERIODS],
    output:
        paths.collection_upload_receipt(),
    log:
        paths.log("upload_collection"),
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/ops.yaml"
    resources:
        network=1,
    params:
        settings=config_provider("upload"),
    script:
        "../scripts/upload_collection.py"
