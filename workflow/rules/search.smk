checkpoint search:
    input:
        aoi=rules.prepare_aoi.output[0],
    output:
        manifest=f"{WORK}/{{period}}/manifest.json",
    log:
        f"{LOGS}/search/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    params:
        stac=config["stac"],
        period=period_bounds,
        code=CODE["search"],
    script:
        "../scripts/search.py"


rule scene_sizes:
    input:
        manifest=rules.search.output.manifest,
        aoi=rules.prepare_aoi.output[0],
    output:
        f"{WORK}/{{period}}/sizes.json",
    log:
        f"{LOGS}/sizes/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    resources:
        network=1,
    script:
        "../scripts/scene_sizes.py"


checkpoint plan:
    input:
        aoi=rules.prepare_aoi.output[0],
        sizes=expand(f"{WORK}/{{period}}/sizes.json", period=PERIODS),
        manifests=[manifest_path(period) for period in PERIODS],
    output:
        plan=f"{WORK}/plan.json",
        report=f"{WORK}/plan.txt",
    log:
        f"{LOGS}/plan.log",
    conda:
        "../../envs/geo.yaml"
    params:
        grid=asdict(GRID),
        storage=config["storage"],
        machine=config["machine"],
        uses_ocm=MASK_USES_OCM,
        work_dir=lambda wildcards, output: str(Path(output.plan).parent),
        results_dir=RESULTS,
        products_kept=PRODUCTS_KEPT,
    script:
        "../scripts/plan.py"
