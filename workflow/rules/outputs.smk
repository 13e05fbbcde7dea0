rule assemble_mosaic:
    input:
        columns=[column_file("{period}", column) for column in COLUMNS],
        # the month's verdict: too many unreadable scenes and nothing is published
        summary=f"{WORK}/{{period}}/scenes.json",
    output:
        mosaic=uploaded(f"{RESULTS}/{{period}}/{BASE}_{{dates}}.tif"),
        counts=uploaded(f"{RESULTS}/{{period}}/{BASE}_{{dates}}_count.tif"),
        quicklook=report(
            f"{RESULTS}/{{period}}/{BASE}_{{dates}}_quicklook.png",
            caption="../report/quicklook.rst",
            category="Mosaics",
            labels={"period": "{period}", "figure": "quicklook"},
        ),
    log:
        f"{LOGS}/assemble/{{period}}_{{dates}}.log",
    benchmark:
        f"{BENCHMARKS}/assemble/{{period}}_{{dates}}.tsv"
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/geo.yaml"
    params:
        grid=asdict(GRID),
        columns=COLUMNS,
        compress=config["output"]["compress"],
        code=CODE["assemble"],
    script:
        "../scripts/assemble_mosaic.py"


rule period_metadata:
    input:
        unpack(metadata_inputs),
    output:
        metadata=f"{RESULTS}/{{period}}/metadata.json",
        item=f"{RESULTS}/{{period}}/item.json",
        statistics=report(
            f"{WORK}/{{period}}/statistics.tsv",
            caption="../report/statistics.rst",
            category="Mosaics",
            labels={"period": "{period}", "figure": "statistics"},
        ),
    log:
        f"{LOGS}/metadata/{{period}}.log",
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/geo.yaml"
    params:
        period=period_bounds,
        grid=asdict(GRID),
        settings=lambda wildcards: cfg.composite_settings(config, wildcards.period)
        | {"mask": config["mask"]},
        code=CODE["metadata"],
        benchmarks=BENCHMARKS,
        webhook_env=config["notify"]["webhook_env"],
        destination=lambda wildcards: upload_destination(wildcards.period),
    script:
        "../scripts/period_metadata.py"
