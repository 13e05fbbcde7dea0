from s2basemap.aoi import load_aoi
from s2basemap.grid import OutputGrid
from s2basemap.logs import logging_to
from s2basemap.storage import plan_run
from s2basemap.timeplan import Machine

with logging_to(snakemake.log[0]):
    plan_run(
        size_paths=snakemake.input.sizes,
        manifest_paths=snakemake.input.manifests,
        grid=OutputGrid(**snakemake.params.grid),
        aoi=load_aoi(snakemake.input.aoi),
        storage=snakemake.params.storage,
        machine=Machine.from_config(snakemake.params.machine),
        uses_ocm=snakemake.params.uses_ocm,
        work_dir=snakemake.params.work_dir,
        results_dir=snakemake.params.results_dir,
        plan_path=snakemake.output.plan,
        report_path=snakemake.output.report,
        products_kept=snakemake.params.products_kept,
    )
