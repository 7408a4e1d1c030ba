"""Tiny networks for tests, built from configs the way checkpoints rebuild them (``build_model``)."""

from __future__ import annotations

from pathlib import Path

import torch

from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.io.weights import save_model

CARN_MEAN = [0.4488, 0.4371, 0.4040]


def trunk(backbone: str = "carn", scale: int | None = None) -> dict:
    if backbone == "carn":
        return {"_target_": "pcsr_lightning.models.CARN", "nf": 16, "group": 4, "scale": scale}
    if backbone == "fsrcnn":
        return {"_target_": "pcsr_lightning.models.FSRCNN", "d": 8, "s": 4, "m": 1, "scale": scale}
    if backbone == "srresnet":
        return {"_target_": "pcsr_lightning.models.SRResNet", "nf": 8, "nb": 1, "scale": scale}
    raise ValueError(backbone)


def tiny_config(kind: str = "pcsr", backbone: str = "carn", num_classes: int = 2) -> dict:
    """A PCSR with ``num_classes`` upsamplers (U_0 the widest), or the x4 original network."""
    mean = CARN_MEAN if backbone == "carn" else [0.0, 0.0, 0.0]
    if kind == "original":
        return {"_target_": "pcsr_lightning.models.OriginalSR", "network": trunk(backbone, 4), "rgb_mean": mean}
    widths = [[24, 24]] + [[max(2, 12 // j)] for j in range(1, num_classes)]
    return {"_target_": "pcsr_lightning.models.PCSR", "backbone": trunk(backbone), "upsampler_hidden": widths,
            "classifier_hidden": [8], "rgb_mean": mean}


def tiny_model(kind: str = "pcsr", backbone: str = "carn", num_classes: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(tiny_config(kind, backbone, num_classes)).eval()


def save_tiny(path: str | Path, kind: str = "pcsr", backbone: str = "carn", num_classes: int = 2,
              seed: int = 0, format: str | None = None) -> Path:
    """A tiny model written to ``path`` (.ckpt, .safetensors or a folder)."""
    model = tiny_model(kind, backbone, num_classes, seed)
    return save_model(path, model, tiny_config(kind, backbone, num_classes), {"seed": seed}, format)
