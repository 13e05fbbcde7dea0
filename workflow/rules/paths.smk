# Every file of the run, from the one layout (s2basemap.layout): rule outputs,
# input functions and the package's readers all use `paths`.
import functools
import os

from snakemake.io import IOFile

from s2basemap.layout import Layout
from s2basemap.ocm import weight_paths

paths = Layout.from_config(config)
# False on object storage (--default-storage-provider): a job's files are then local
# copies on the node that ran it, and the run's files are objects
SHARED_WORK_DIR = workflow.storage_settings.default_storage_provider is None


def stored(path):
    """`path` as the run's jobs see it: an object in the default storage when the run
    has one (--default-storage-provider), else the file itself."""
    return IOFile(workflow.modifier.path_modifier.modify(path), rule=None)


_FETCHED = set()


def local_copy(file):
    """The local path of a run file (a path or a rule's output) that the main process
    reads while it builds the DAG. On object storage the object is fetched at its first
    read in each run, so that a copy left by an earlier run is never read: a checkpoint
    is read only once its job is done, so this run's first read sees its latest
    output. Synchronously: input and params functions run inside Snakemake's event loop.
    """
    file = file if hasattr(file, "storage_object") else stored(file)
    if file.is_storage and str(file) not in _FETCHED:
        store = file.storage_object
        store.local_path().parent.mkdir(parents=True, exist_ok=True)
        store.retrieve_object()
        _FETCHED.add(str(file))
    return str(file)


def exists(path):
    """Whether a run file exists where the run keeps it."""
    file = stored(path)
    return file.storage_object.exists() if file.is_storage else os.path.exists(file)


def run_file(path):
    """A run file for the main process to read: its local copy when it exists (fetched
    from storage on object storage), else the path itself."""
    return local_copy(path) if exists(path) else path


@functools.cache
def published(period):
    """Whether a period's results were written before this run (its metadata is the last
    of them); asked once per run and period."""
    return exists(paths.metadata(period))


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


# outside work_dir: the model's weights are shared by every run, and on object
# storage they stay local files (local()), in the jobs' image
OCM_WEIGHTS = [
    local(str(path))
    for path in weight_paths(
        config["mask"]["ocm"]["weights_dir"], config["mask"]["ocm"]["model_version"]
    )
]
# The weights a run fetches and its mask jobs list. Without a shared filesystem
# Snakemake runs a job with a local() file in the main process, so the mask jobs
# would all run there: the weights are then the image's, and not an input.
RUN_WEIGHTS = OCM_WEIGHTS if MASK_USES_OCM and SHARED_WORK_DIR else []
