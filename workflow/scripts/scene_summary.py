from s2basemap.failures import vet_month
from s2basemap.job import job
from s2basemap.manifest import write_period_summary

with job(snakemake) as j:
    vet_month(j.layout, j.period_label, j.input.records, j.params.max_left_out_fraction)
    write_period_summary(j.input.manifest, j.input.records, j.input.stats, j.output[0])
