from s2basemap.job import job
from s2basemap.outputs import write_date_products

with job(snakemake) as j:
    write_date_products(
        grid=j.grid,
        column_paths=dict(zip(j.params.columns, j.input.columns, strict=True)),
        columns=j.params.columns,
        products={key: j.output[key] for key in ("date", "date_picture")},
        compress=j.params.compress,
        period=j.period,
    )
