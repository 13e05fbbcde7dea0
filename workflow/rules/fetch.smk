rule fetch_scene:
    input:
        aoi=rules.prepare_aoi.output[0],
        # ancient: once a period's fetches were let through, a later change to
        # the gate (an earlier month rerun, a month added before) refetches nothing
        gate=ancient(paths.fetch_gate()),
        # the scene's params come from the manifest: a job that runs where nothing is
        # shared reads it from storage. ancient: a new search of the month reruns only
        # the scenes whose params changed
        manifest=ancient(paths.manifest()),
    output:
        tif=intermediate(paths.scene_raster()),
        record=paths.scene_record(),
    log:
        paths.log("fetch", "{period}", "{scene}"),
    benchmark:
        paths.benchmark("fetch")
    priority: sweep_priority(FETCH_PRIORITY)
    conda:
        "../../envs/geo.yaml"
    resources:
        network=1,
    # fetch.* (retries, timeouts, outage_after) and stac.source's signing are read
    # by the job from the config, not params: changing them refetches nothing
    params:
        scene=scene_fetch_spec,
        # the one fetch setting that decides pixels
        offset_check=config_provider("fetch", "offset_check_threshold"),
        code=CODE["fetch"],
    script:
        "../scripts/fetch_scene.py"


# Opens a period's fetches once the period storage.months_in_flight places earlier
# has all its tiles (see earlier_period_composited); the gate file keeps the fetch
# jobs' own inputs the same whatever the series looks like.
rule fetch_gate:
    input:
        earlier_period_composited,
    output:
        touch(paths.fetch_gate()),
    log:
        paths.log("fetch_gate", "{period}"),
    conda:
        "../../envs/geo.yaml"
    shell:
        "echo fetches of {wildcards.period} may start > {log}"
