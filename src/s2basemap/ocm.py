"""OmniCloudMask: weights on disk, device choice, coarser inference, out-of-memory fallback.

The model's own code does the work (`omnicloudmask.predict_from_array`); this
module decides where and how it runs and never lets it reach for the network
in the middle of a run.
"""

from __future__ import annotations

import csv
import importlib.util
import logging
import math
import os
import shutil
import time
import urllib.error
import urllib.request
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from s2basemap.atomic import atomic_path

log = logging.getLogger(__name__)

MIN_EDGE = 32  # OmniCloudMask refuses smaller inputs (HARD_MINIMUM_PATCH_SIZE)
NATIVE_RESOLUTION = 10
DEFAULT_HUB = "https://huggingface.co"


class WeightsMissingError(FileNotFoundError):
    """The weights are not on disk; the message says how to stage them."""


class DeviceFault(RuntimeError):
    """Inference failed for a reason other than memory (a CUDA error, say). On a GPU
    such an error can poison the process's device context, so the process that raised
    it must not run the model again."""


@dataclass(frozen=True)
class OCMOptions:
    inference_resolution: int = 20
    device: str = "auto"
    batch_size: int = 4
    patch_size: int = 1000
    patch_overlap: int = 100
    model_version: float = 4.0
    weights_dir: str = "resources/models/omnicloudmask"
    server: bool = True
    server_idle_seconds: float = 60.0

    @classmethod
    def from_config(cls, ocm_config: dict) -> OCMOptions:
        return cls(**{k: ocm_config[k] for k in cls.__dataclass_fields__ if k in ocm_config})


@dataclass
class RunInfo:
    """How the model actually ran: reported in each scene's mask statistics."""

    device: str = ""
    dtype: str = ""
    batch_size: int = 0
    seconds: float = 0.0
    fallbacks: list[str] = field(default_factory=list)


def weight_files(version: float) -> list[str]:
    """File names of one model version, from omnicloudmask's own index.

    The index is found without importing omnicloudmask (which imports torch), so
    building the DAG stays fast.
    """
    spec = importlib.util.find_spec("omnicloudmask")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("omnicloudmask is not installed (pip install omnicloudmask)")
    index = Path(spec.submodule_search_locations[0]) / "model_download_links.csv"
    with index.open() as handle:
        names = [
            row["file_name"] for row in csv.DictReader(handle) if float(row["version"]) == version
        ]
    if not names:
        raise ValueError(f"OmniCloudMask has no model version {version}")
    return names


def weight_paths(weights_dir: str | Path, version: float) -> list[Path]:
    return [Path(weights_dir) / name for name in weight_files(version)]


def package_weights_dir() -> Path:
    """omnicloudmask's own model directory (where its default download puts the
    weights), e.g. ~/.local/share/omnicloudmask/1.8.1: its `get_model_data_dir`
    without creating the directory."""
    import platformdirs
    from omnicloudmask.download_models import release_version

    return Path(platformdirs.user_data_dir("omnicloudmask", version=release_version()))


def _usable(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1024 * 1024


def check_weights(weights_dir: str | Path, version: float) -> list[Path]:
    """The weight files, or a WeightsMissingError that says how to stage them.

    omnicloudmask re-downloads files of 1 MB or less, so those count as missing.
    """
    paths = weight_paths(weights_dir, version)
    missing = [p for p in paths if not _usable(p)]
    if missing:
        raise WeightsMissingError(staging_message(weights_dir, version, missing))
    return paths


def staging_message(weights_dir, version: float, missing: list[Path]) -> str:
    names = "\n".join(f"  {p.name}" for p in missing)
    return (
        f"OmniCloudMask v{version} weights are missing from {weights_dir}:\n{names}\n"
        f"On a machine with internet access run `snakemake ocm_weights` (it uses "
        f"omnicloudmask's own download, or copies them from omnicloudmask's own directory, "
        f"{package_weights_dir()}, when they are there), or copy these files from such a "
        f"machine (from that directory, or download them from the NickWright/OmniCloudMask "
        f"model repository) into {weights_dir}. "
        f"Alternatively set mask.mode: scl to mask without the model."
    )


def download_weights(
    weights_dir: str | Path, version: float, probe_timeout: float = 10
) -> list[Path]:
    """Fetch the weights once through omnicloudmask's own download code, or copy
    them from omnicloudmask's own directory when an earlier download put them there.

    The hub is probed first with a short timeout, so an offline machine gets the
    staging instructions at once instead of a long hang inside the downloader.
    """
    own = weight_paths(package_weights_dir(), version)
    if all(_usable(p) for p in own):
        Path(weights_dir).mkdir(parents=True, exist_ok=True)
        for source in own:
            with atomic_path(Path(weights_dir) / source.name) as tmp:
                shutil.copyfile(source, tmp)
        log.info("copied the weights from omnicloudmask's directory %s", own[0].parent)
        return check_weights(weights_dir, version)
    hub = os.environ.get("HF_ENDPOINT", DEFAULT_HUB)
    try:
        urllib.request.urlopen(urllib.request.Request(hub, method="HEAD"), timeout=probe_timeout)
    except urllib.error.HTTPError:
        pass  # the hub answered, even if not with 200: it is reachable
    except (urllib.error.URLError, OSError) as exc:
        missing = weight_paths(weights_dir, version)
        raise WeightsMissingError(
            f"cannot reach the model hub {hub} ({exc}).\n"
            + staging_message(weights_dir, version, missing)
        ) from None
    from omnicloudmask.download_models import get_models

    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "60")
    Path(weights_dir).mkdir(parents=True, exist_ok=True)
    get_models(model_dir=weights_dir, model_version=version)
    return check_weights(weights_dir, version)


def choose_device(requested: str):
    """(device, dtype): CUDA with half precision when present, else CPU in fp32."""
    import torch

    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("mask.ocm.device is 'cuda' but torch sees no CUDA device")
    device = torch.device(requested)
    return device, (torch.float16 if device.type == "cuda" else torch.float32)


def to_inference_grid(bands: np.ndarray, factor: int, channels=None) -> np.ndarray:
    """Block means over `factor` x `factor` pixels, ignoring nodata (0); never upsamples.

    `channels` picks bands of `bands` (all by default) without copying them. The
    edge is padded with nodata to whole blocks, and the result to at least the
    model's minimum size.
    """
    channels = np.arange(bands.shape[0]) if channels is None else np.asarray(channels)
    _, height, width = bands.shape
    rows, cols = -(-height // factor), -(-width // factor)
    out = np.zeros((len(channels), max(rows, MIN_EDGE), max(cols, MIN_EDGE)), dtype=np.float32)
    from s2basemap.maskkernels import block_means

    block_means(bands, channels, factor, rows, cols, out)
    return out


def to_scene_grid(classes: np.ndarray, factor: int, shape: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour back to the 10 m scene grid (an exact repeat), cropped."""
    return classes.repeat(factor, axis=0).repeat(factor, axis=1)[: shape[0], : shape[1]]


def fitted_patch_size(shape: tuple[int, ...], patch: int, overlap: int) -> int:
    """The smallest patch (<= `patch`) that tiles the image in as few patches as `patch` does.

    A 2000 px image with 1000 px patches overlapping by 100 needs 3 per side, the
    last mostly overlap; 734 px patches also need 3 and compute 46 % less.
    """
    fitted = 0
    for length in shape[-2:]:
        if length <= patch:
            fitted = max(fitted, length)
            continue
        count = math.ceil((length - overlap) / (patch - overlap))
        fitted = max(fitted, math.ceil((length - overlap) / count) + overlap)
    return min(patch, max(fitted, MIN_EDGE))


def predict(
    red_green_nir: np.ndarray, options: OCMOptions, models=None, device_lock=None
) -> tuple[np.ndarray, RunInfo]:
    """OmniCloudMask classes (0 clear, 1 thick, 2 thin, 3 shadow) on the 10 m grid."""
    classes, factor, info = predict_coarse(red_green_nir, options, models, device_lock)
    return to_scene_grid(classes, factor, red_green_nir.shape[1:]), info


def predict_coarse(
    bands: np.ndarray, options: OCMOptions, models=None, device_lock=None, channels=None
) -> tuple[np.ndarray, int, RunInfo]:
    """OmniCloudMask classes on the inference grid, and its factor to the 10 m grid: pixel
    (r, c) of the scene has class [r // factor, c // factor]. `channels` picks red, green
    and NIR out of `bands` (by default its three bands).

    `device_lock` (a shared model process's) is held for the inference only, so
    other scenes' reading and resampling overlap it.
    """
    factor = options.inference_resolution // NATIVE_RESOLUTION
    low = to_inference_grid(bands, factor, channels)
    if models is None:
        check_weights(options.weights_dir, options.model_version)
    device, dtype = choose_device(options.device)
    with device_lock or nullcontext():
        started = time.perf_counter()
        try:
            classes, info = _predict_with_fallback(low, options, device, dtype, models)
        except (MemoryError, DeviceFault):
            raise
        except RuntimeError as exc:  # torch's errors, CUDA's included (AcceleratorError)
            raise DeviceFault(f"inference failed on {device.type}: {exc}") from exc
        info.seconds = round(time.perf_counter() - started, 3)
    return classes, factor, info


def _predict_with_fallback(array, options: OCMOptions, device, dtype, models):
    """Out of GPU memory: halve the batch, then move to the CPU; each step logged.

    A failure that is not out-of-memory propagates: no mask is better than a
    silently wrong one.
    """
    import torch
    from omnicloudmask import predict_from_array

    info = RunInfo()
    batch = options.batch_size
    while True:
        try:
            result = predict_from_array(
                array,
                patch_size=fitted_patch_size(
                    array.shape, options.patch_size, options.patch_overlap
                ),
                patch_overlap=options.patch_overlap,
                batch_size=batch,
                inference_device=device,
                inference_dtype=dtype,
                no_data_value=0,
                custom_models=models,
                destination_model_dir=options.weights_dir,
                model_version=options.model_version,
            )
            info.device, info.dtype, info.batch_size = (
                device.type,
                str(dtype).removeprefix("torch."),
                batch,
            )
            return result[0].astype(np.uint8), info
        except torch.OutOfMemoryError as exc:
            if device.type == "cuda":
                torch.cuda.empty_cache()
            if batch > 1:
                step = (
                    f"out of memory on {device.type} with batch {batch}; retrying with {batch // 2}"
                )
                batch //= 2
            elif device.type != "cpu":
                step = f"out of memory on {device.type} with batch 1; retrying on the CPU in fp32"
                device, dtype, batch = torch.device("cpu"), torch.float32, options.batch_size
            else:
                raise MemoryError(
                    f"OmniCloudMask ran out of memory on the CPU with batch 1: {exc}"
                ) from exc
            log.warning(step)
            info.fallbacks.append(step)
