from s2basemap.logs import logging_to
from s2basemap.maskserver import run_mask_job

with logging_to(snakemake.log[0]):
    run_mask_job(
        scene_tif=snakemake.input.scene,
        record_json=snakemake.input.record,
        mask_tif=snakemake.output.mask,
        stats_json=snakemake.output.stats,
        options=snakemake.params.options,
        shared=snakemake.params.shared_process,
        digest=snakemake.params.code,
        threads=snakemake.threads,
        server_log=snakemake.params.server_log,
    )
