"""Tiny networks and their configs for tests, in one place.

Configs are built the way checkpoints rebuild them (``build_model``); ``pcsr_net`` builds a PCSR from
modules directly, unseeded (the caller's RNG state picks the weights), in train mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from pcsr_lightning.io.checkpoint import build_model
from pcsr_lightning.io.weights import save_model
from pcsr_lightning.models import CARN, PCSR

CARN_MEAN = [0.4488, 0.4371, 0.4040]
TRUNK_SIZES = {"carn": {"nf": 16, "group": 4}, "fsrcnn": {"d": 8, "s": 4, "m": 1}, "srresnet": {"nf": 8, "nb": 1}}
TRUNK_CLASSES = {"carn": "CARN", "fsrcnn": "FSRCNN", "srresnet": "SRResNet"}


def trunk(backbone: str = "carn", scale: int | None = None, **sizes) -> dict:
    """A small backbone's config; ``sizes`` (nf=8, d=12, ...) replace its widths."""
    if backbone not in TRUNK_SIZES:
        raise ValueError(backbone)
    return {"_target_": f"pcsr_lightning.models.{TRUNK_CLASSES[backbone]}", **TRUNK_SIZES[backbone], **sizes,
            "scale": scale}


def pcsr_config(backbone: str | dict = "carn", upsampler_hidden: Sequence[Sequence[int]] = ((24, 24), (8,)),
                classifier_hidden: Sequence[int] = (8,), rgb_mean: Sequence[float] | None = None, **sizes) -> dict:
    """A PCSR config over ``trunk(backbone, **sizes)`` (or a given backbone config); no ``rgb_mean`` entry
    when None (the model's default, zeros)."""
    config = {"_target_": "pcsr_lightning.models.PCSR",
              "backbone": trunk(backbone, **sizes) if isinstance(backbone, str) else backbone,
              "upsampler_hidden": [list(w) for w in upsampler_hidden], "classifier_hidden": list(classifier_hidden)}
    if rgb_mean is not None:
        config["rgb_mean"] = list(rgb_mean)
    return config


def original_config(backbone: str = "carn", scale: int = 4, rgb_mean: Sequence[float] | None = None,
                    **sizes) -> dict:
    """The original network: ``trunk(backbone, scale, **sizes)`` with its upsampling tail."""
    config = {"_target_": "pcsr_lightning.models.OriginalSR", "network": trunk(backbone, scale, **sizes)}
    if rgb_mean is not None:
        config["rgb_mean"] = list(rgb_mean)
    return config


def tiny_config(kind: str = "pcsr", backbone: str = "carn", num_classes: int = 2) -> dict:
    """A PCSR with ``num_classes`` upsamplers (U_0 the widest), or the x4 original network."""
    mean = CARN_MEAN if backbone == "carn" else [0.0, 0.0, 0.0]
    if kind == "original":
        return original_config(backbone, 4, mean)
    widths = [[24, 24]] + [[max(2, 12 // j)] for j in range(1, num_classes)]
    return pcsr_config(backbone, widths, [8], mean)


def tiny_model(kind: str = "pcsr", backbone: str = "carn", num_classes: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(tiny_config(kind, backbone, num_classes)).eval()


def save_tiny(path: str | Path, kind: str = "pcsr", backbone: str = "carn", num_classes: int = 2,
              seed: int = 0, format: str | None = None) -> Path:
    """A tiny model written to ``path`` (.ckpt, .safetensors or a folder)."""
    model = tiny_model(kind, backbone, num_classes, seed)
    return save_model(path, model, tiny_config(kind, backbone, num_classes), {"seed": seed}, format)


def pcsr_net(backbone: nn.Module | None = None, upsampler_hidden: Sequence[Sequence[int]] = ((16, 16), (4,)),
             classifier_hidden: Sequence[int] = (8,), rgb_mean: Sequence[float] = (0.3, 0.4, 0.5)) -> PCSR:
    """A small PCSR from modules, in train mode: ``backbone`` defaults to CARN(nf=8)."""
    return PCSR(CARN(nf=8) if backbone is None else backbone, [list(w) for w in upsampler_hidden],
                list(classifier_hidden), rgb_mean=tuple(rgb_mean))


def routing_pcsr(m: int = 2, classifier_hidden: Sequence[int] = (8,)) -> PCSR:
    """``m`` upsamplers on a CARN(nf=16), U_0 [32, 32] and the others [8, 8], in eval mode: the routing tests'
    model."""
    return pcsr_net(CARN(nf=16), [[32, 32]] + [[8, 8]] * (m - 1), classifier_hidden).eval()


def half_flat(h: int = 64, w: int = 96, seed: int = 0) -> torch.Tensor:
    """An LR image, texture on the right, a smooth (not constant) wave on the left: the flat-tile gate's
    candidates are the left tiles."""
    g = torch.Generator().manual_seed(seed)
    lr = torch.rand(1, 3, h, w, generator=g)
    xs = torch.arange(w // 2, dtype=torch.float32)
    lr[..., : w // 2] = 0.45 + 0.02 * torch.sin(xs / 9)[None, None, None]
    return lr
