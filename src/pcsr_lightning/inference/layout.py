"""Memory layout of inference: one choice per device, the same for every model a command compares.

Convolutions are the backbone's and the original network's cost. On CPU, oneDNN runs them in a
channels-last (NHWC) layout; an NCHW model pays a reorder of every activation on every layer (measured by
``experiments/probes/layout_cpu.py``; docs/performance.md). On CUDA, cuDNN's tensor-core kernels are NHWC too. So
``auto`` means channels_last on both; ``contiguous`` (NCHW) stays available to force, and any other device
type gets NCHW, the layout every backend supports. The routed part after the
backbone reads features in either layout and keeps its image-sized buffers NCHW (``routed.render``).
"""

from __future__ import annotations

import torch
from torch import nn

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
CHOICES = ("auto", *MEMORY_FORMATS)


AUTO = {"cpu": torch.channels_last, "cuda": torch.channels_last}


def choose_memory_format(device: torch.device | str, requested: str = "auto") -> torch.memory_format:
    """``requested`` is 'auto', 'channels_last' or 'contiguous'; 'auto' is the device type's rule (``AUTO``)."""
    if requested == "auto":
        try:
            kind = torch.device(device).type
        except (RuntimeError, ValueError, TypeError):  # not a device: its own check names it
            kind = str(device)
        return AUTO.get(kind, torch.contiguous_format)
    if requested not in MEMORY_FORMATS:
        raise ValueError(f"memory_format must be one of {list(CHOICES)}, got {requested!r}")
    return MEMORY_FORMATS[requested]


def format_name(memory_format: torch.memory_format) -> str:
    return next(name for name, fmt in MEMORY_FORMATS.items() if fmt == memory_format)


def in_memory_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """The model's 4-D weights in ``memory_format`` (in place; returns the model)."""
    return model.to(memory_format=memory_format)


def as_input(image: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    """A (B,3,h,w) input in ``memory_format``; convolutions keep the layout of their input."""
    return image.contiguous(memory_format=memory_format)
