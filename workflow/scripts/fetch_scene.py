from s2basemap.fetch import FetchOptions, fetch_scene_job
from s2basemap.job import job

with job(snakemake) as j:
    fetch_scene_job(
        spec=j.params.scene,
        aoi=j.aoi,
        tif_path=j.output.tif,
        record_path=j.output.record,
        ledger_path=j.layout.failed_record(j.period_label, j.scene_id),
        # how hard to try is read from the config, not from params: changing it
        # must not refetch scenes already fetched
        options=FetchOptions.from_config(j.config["fetch"]),
        outage_path=j.layout.outage(),
        signer=j.signer,
        log_path=j.log_path,
    )
