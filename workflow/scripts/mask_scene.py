from s2basemap.atomic import atomic_write_json
from s2basemap.logs import logging_to
from s2basemap.manifest import load_json
from s2basemap.masks import MaskOptions, mask_scene

with logging_to(snakemake.log[0]):
    import torch

    torch.set_num_threads(snakemake.threads)
    stats = mask_scene(
        scene_tif=snakemake.input.scene,
        fetch_record=load_json(snakemake.input.record),
        mask_tif=snakemake.output.mask,
        options=MaskOptions.from_config(snakemake.params.options),
    )
    atomic_write_json(snakemake.output.stats, stats)
