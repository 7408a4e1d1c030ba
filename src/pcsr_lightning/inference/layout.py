"""Memory layout of inference: one choice per device, the same for every model a command compares.

Convolutions are the backbone's and the original network's cost. On CPU, oneDNN runs them in a
channels-last (NHWC) layout; an NCHW model pays a reorder of every activation on every layer (2-core Zen 5:
the original CARN 1.5x and FSRCNN 1.4x slower in NCHW, ``experiments/layout_cpu.py``). On CUDA, cuDNN's tensor-core kernels are NHWC too. So ``auto``
means channels_last on both; ``contiguous`` (NCHW) stays available to force. The routed part after the
backbone reads features in either layout and keeps its image-sized buffers NCHW (``routed.render``).
"""

from __future__ import annotations

import torch
from torch import nn

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
CHOICES = ("auto", *MEMORY_FORMATS)


def choose_memory_format(device: torch.device | str, requested: str = "auto") -> torch.memory_format:
    """``requested`` is 'auto', 'channels_last' or 'contiguous'; 'auto' is channels_last (see the module doc)."""
    if requested == "auto":  # the same on every device today (see the module doc); the device is for the rule
        return torch.channels_last
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
