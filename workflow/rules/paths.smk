# Every file of the run, from the one layout (s2basemap.layout): rule outputs,
# input functions and the package's readers all use `paths`.
from s2basemap.layout import Layout
from s2basemap.ocm import weight_paths

paths = Layout.from_config(config)


def intermediate(path):
    """Scene rasters, masks and composites: deleted once their month's tiles and products
    are written, unless storage.keep_scene_rasters keeps them for cheap reruns."""
    return path if config["storage"]["keep_scene_rasters"] else temp(path)


def uploaded(path):
    """A month's mosaic and count COGs: deleted once uploaded (and read for the
    metadata) when upload.keep_local is false."""
    return path if config["upload"]["keep_local"] else temp(path)


def period_products(period):
    """A period's mosaic, count and quicklook files."""
    return paths.products(period, PERIODS[period].filename_dates)


# outside work_dir: the model's weights are shared by every run
OCM_WEIGHTS = [
    str(path)
    for path in weight_paths(
        config["mask"]["ocm"]["weights_dir"], config["mask"]["ocm"]["model_version"]
    )
]
