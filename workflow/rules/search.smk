checkpoint search:
    input:
        aoi=rules.prepare_aoi.output[0],
    output:
        manifest=paths.manifest(),
    log:
        paths.log("search", "{period}"),
    conda:
        "../../envs/geo.yaml"
    params:
        stac=config_provider("stac"),
        period=period_bounds,
        code=CODE["search"],
    script:
        "../scripts/search.py"


rule scene_sizes:
    input:
        manifest=rules.search.output.manifest,
        aoi=rules.prepare_aoi.output[0],
    output:
        paths.sizes(),
    log:
        paths.log("sizes", "{period}"),
    conda:
        "../../envs/geo.yaml"
    resources:
        network=1,
    script:
        "../scripts/scene_sizes.py"


checkpoint plan:
    input:
        aoi=rules.prepare_aoi.output[0],
        sizes=[paths.sizes(period) for period in PERIODS],
        manifests=[paths.manifest(period) for period in PERIODS],
    output:
        plan=paths.plan(),
        report=paths.plan_report(),
    log:
        paths.log("plan"),
    conda:
        "../../envs/geo.yaml"
    params:
        grid=asdict(GRID),
        storage=config_provider("storage"),
        machine=config_provider("machine"),
        uses_ocm=MASK_USES_OCM,
        products_kept=config_provider("upload", "keep_local"),
    script:
        "../scripts/plan.py"
