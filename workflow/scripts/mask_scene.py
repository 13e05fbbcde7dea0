from s2basemap.job import job
from s2basemap.maskserver import run_mask_job

with job(snakemake) as j:
    run_mask_job(
        scene_tif=j.input.scene,
        record_json=j.input.record,
        mask_tif=j.output.mask,
        stats_json=j.output.stats,
        options=j.params.options,
        shared=j.params.shared_process,
        digest=j.params.code,
        threads=j.threads,
        server_log=j.layout.log("mask_server"),
    )
