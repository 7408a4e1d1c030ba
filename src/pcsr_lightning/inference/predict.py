"""One entry point for SR with either kind of checkpoint, used by every command."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from pcsr_lightning.inference.gate import DEFAULT_TILE
from pcsr_lightning.inference.layout import in_memory_format
from pcsr_lightning.inference.routed import upscale
from pcsr_lightning.io.checkpoint import LoadedModel, load_checkpoint


@dataclass(frozen=True)
class RoutingOptions:
    """How a PCSR model routes pixels; ignored by original networks."""

    k: float = 0.0
    adaptive: bool = False
    refine: bool = True
    tile: int = 0  # LR tile size for the backbone, 0 = whole image
    skip_flat: float | None = None  # flat-tile gate threshold (``routed.upscale``), None = off
    skip_tile: int = DEFAULT_TILE  # the gate's LR tile size
    skip_halo: int | None = None  # the gate's backbone halo, None = the receptive radius (exact)


def resolve_device(name: str) -> torch.device:
    """``cpu`` or ``cuda[:N]``, checked against this machine."""
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"--device {name!r} is not a device: use cpu or cuda[:N]") from err
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name!r}: only cpu and cuda[:N] are supported")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {name} requested but CUDA is not available on this machine")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


def check_scale_value(scale: float) -> float:
    """A finite scale above 1 (inf and nan would make sizes meaningless)."""
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 1):
        raise ValueError(f"--scale must be a finite number > 1, got {scale}")
    return scale


def load_for_inference(path, device: torch.device, memory_format: torch.memory_format) -> LoadedModel:
    """A checkpoint on ``device`` in ``memory_format`` (see ``layout``), ready for ``super_resolve``."""
    loaded = load_checkpoint(path, map_location=device)
    in_memory_format(loaded.model, memory_format)
    return loaded


def check_scale(loaded: LoadedModel, scale: float) -> None:
    check_scale_value(scale)
    if not loaded.is_pcsr and float(scale) != float(loaded.model.scale):
        raise ValueError(f"this original network upscales x{loaded.model.scale} only, got --scale {scale}")


@torch.no_grad()
def super_resolve(
    loaded: LoadedModel, lr: torch.Tensor, scale: float, routing: RoutingOptions = RoutingOptions()
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """lr (B,3,h,w) in [0,1] -> (sr (B,3,H,W), class map (B,H,W) or None for original networks)."""
    if loaded.is_pcsr:
        out = upscale(
            loaded.model,
            lr, scale, k=routing.k, adaptive=routing.adaptive, refine=routing.refine, tile=routing.tile,
            skip_flat=routing.skip_flat, skip_tile=routing.skip_tile, skip_halo=routing.skip_halo,
        )
        return out.sr, out.classes
    return loaded.model(lr), None
