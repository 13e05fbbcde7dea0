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
    notify_start()


onsuccess:
    notify_summary()


onerror:
    notify_errors(log)
