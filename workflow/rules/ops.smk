rule upload_period:
    input:
        unpack(upload_inputs),
    output:
        f"{WORK}/{{period}}/upload.json",
    log:
        f"{LOGS}/upload/{{period}}.log",
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/ops.yaml"
    resources:
        network=1,
    params:
        settings=config["upload"],
    script:
        "../scripts/upload_period.py"


onstart:
    on_start()


onsuccess:
    notify_summary()


onerror:
    on_error(log)
