rule assemble_mosaic:
    input:
        columns=[paths.column("{period}", column) for column in COLUMNS],
        # the month's verdict: too many unreadable scenes and nothing is published
        summary=paths.scene_summary(),
    output:
        mosaic=uploaded(paths.products()["mosaic"]),
        counts=uploaded(paths.products()["counts"]),
        quicklook=report(
            paths.products()["quicklook"],
            caption="../report/quicklook.rst",
            category="Mosaics",
            labels={"period": "{period}", "figure": "quicklook"},
        ),
    log:
        paths.log("assemble", "{period}", "{dates}"),
    benchmark:
        paths.benchmark("assemble", key="{dates}")
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/geo.yaml"
    params:
        grid=asdict(GRID),
        columns=COLUMNS,
        compress=config_provider("output", "compress"),
        code=CODE["assemble"],
    script:
        "../scripts/assemble_mosaic.py"


# pick and medoid: the acquisition day of each pixel, and its picture for the report
rule assemble_dates:
    input:
        columns=[paths.column("{period}", column) for column in COLUMNS],
        summary=paths.scene_summary(),
    output:
        date=uploaded(paths.date_products()["date"]),
        date_picture=report(
            paths.date_products()["date_picture"],
            caption="../report/date.rst",
            category="Mosaics",
            labels={"period": "{period}", "figure": "acquisition date"},
        ),
    log:
        paths.log("assemble_dates", "{period}", "{dates}"),
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/geo.yaml"
    params:
        grid=asdict(GRID),
        columns=COLUMNS,
        period=period_bounds,
        compress=config_provider("output", "compress"),
        code=CODE["dates"],
    script:
        "../scripts/assemble_dates.py"


rule period_metadata:
    input:
        unpack(metadata_inputs),
    output:
        metadata=paths.metadata(),
        item=paths.item(),
        statistics=report(
            paths.statistics(),
            caption="../report/statistics.rst",
            category="Mosaics",
            labels={"period": "{period}", "figure": "statistics"},
        ),
    log:
        paths.log("metadata", "{period}"),
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/geo.yaml"
    params:
        period=period_bounds,
        grid=asdict(GRID),
        settings=lambda wildcards: cfg.composite_settings(config, wildcards.period)
        | {"mask": config["mask"]},
        code=CODE["metadata"],
        # per-node files: their sums only where the jobs share this filesystem
        benchmarks=lambda wildcards: (
            paths.timed_benchmarks(wildcards.period) if SHARED_WORK_DIR else None
        ),
        webhook_env=config_provider("notify", "webhook_env"),
        destination=upload_destination,
        collection=config_provider("output", "filename_base"),
        collection_href=collection_href,
    script:
        "../scripts/period_metadata.py"


# the series' STAC Collection: rewritten when a month's Item is (re)made, once every
# month of the run is published; a month that fails leaves it as it was
rule series_collection:
    input:
        months=[paths.item(period) for period in PERIODS],
    output:
        paths.collection(),
    log:
        paths.log("collection"),
    priority: OUTPUTS_PRIORITY
    conda:
        "../../envs/geo.yaml"
    params:
        collection=config_provider("output", "filename_base"),
        code=CODE["collection"],
    script:
        "../scripts/series_collection.py"
