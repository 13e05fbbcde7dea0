from s2basemap.job import job
from s2basemap.storage import plan_run
from s2basemap.timeplan import Machine

with job(snakemake) as j:
    plan_run(
        size_paths=j.input.sizes,
        manifest_paths=j.input.manifests,
        grid=j.grid,
        aoi=j.aoi,
        storage=j.params.storage,
        machine=Machine.from_config(j.params.machine),
        uses_ocm=j.params.uses_ocm,
        layout=j.layout,
        plan_path=j.output.plan,
        report_path=j.output.report,
        products_kept=j.params.products_kept,
    )
