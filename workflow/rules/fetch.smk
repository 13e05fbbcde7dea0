rule fetch_scene:
    input:
        aoi=rules.prepare_aoi.output[0],
        # ancient: once a period's fetches were let through, a later change to
        # the gate (an earlier month rerun, a month added before) refetches nothing
        gate=ancient(f"{WORK}/{{period}}/fetch.gate"),
    output:
        tif=intermediate(f"{WORK}/{{period}}/scenes/{{scene}}.tif"),
        record=f"{WORK}/{{period}}/scenes/{{scene}}.json",
    log:
        f"{LOGS}/fetch/{{period}}/{{scene}}.log",
    benchmark:
        f"{BENCHMARKS}/fetch/{{period}}/{{scene}}.tsv"
    priority: sweep_priority(FETCH_PRIORITY)
    conda:
        "../../envs/geo.yaml"
    resources:
        network=1,
    params:
        scene=scene_fetch_spec,
        # the one fetch setting that decides pixels; retries and timeouts do not
        offset_check=config["fetch"]["offset_check_threshold"],
        outage=OUTAGE_FILE,
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
        touch(f"{WORK}/{{period}}/fetch.gate"),
    log:
        f"{LOGS}/fetch_gate/{{period}}.log",
    conda:
        "../../envs/geo.yaml"
    shell:
        "echo fetches of {wildcards.period} may start > {log}"
