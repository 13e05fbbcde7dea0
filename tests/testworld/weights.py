"""Fabricated OmniCloudMask weights: the real v4 architecture, our own parameters.

The real weights live on a model hub this machine cannot reach. These files have
omnicloudmask's v4 names and the architecture it builds for them (smp Unet,
tu-regnety_004 and tu-edgenext_small encoders, 3 inputs, 4 classes), so
omnicloudmask's own loading and inference code runs unchanged. "cloud" and
"clear" weights zero the segmentation head and put a large bias on one class,
so the model predicts that class everywhere; "random" keeps the random init
(realistic compute for benchmarks).
"""

from __future__ import annotations

import csv
from pathlib import Path

from s2basemap.ocm import weight_files

CLASS_OF = {"clear": 0, "cloud": 1, "thin": 2, "shadow": 3}


def fabricate_weights(directory: Path, kind: str, version: float = 4.0) -> Path:
    import segmentation_models_pytorch as smp
    import torch
    from omnicloudmask.download_models import model_index_path
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    with model_index_path.open() as handle:
        encoders = {r["file_name"]: r["timm_model_name"] for r in csv.DictReader(handle)}
    torch.manual_seed(0)
    for name in weight_files(version):
        model = smp.Unet(
            encoder_name=encoders[name], encoder_weights=None, in_channels=3, classes=4
        )
        state = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
        if kind in CLASS_OF:
            state["segmentation_head.0.weight"].zero_()
            bias = torch.zeros(4)
            bias[CLASS_OF[kind]] = 50.0
            state["segmentation_head.0.bias"] = bias
        save_file(state, str(directory / name))
    return directory
