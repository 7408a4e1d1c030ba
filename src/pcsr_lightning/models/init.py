"""Initial weights. ``"release"`` reproduces how the authors' released training code initialises each
backbone; ``"pytorch"`` keeps PyTorch's per-layer defaults. The choice is a constructor argument, so it
is applied when the network is built and is visible in every config that builds one."""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn

SCHEMES = ("release", "pytorch")
RELEASE_SCALE = 0.1


def check_scheme(init: str, network: str) -> str:
    if init not in SCHEMES:
        raise ValueError(f"{network}: unknown init {init!r}; choose one of {', '.join(SCHEMES)}")
    return init


def scaled_kaiming_(modules: Iterable[nn.Module], scale: float = RELEASE_SCALE) -> None:
    """He-normal weights (fan-in, gain for ReLU) multiplied by ``scale``, zero biases: small residual
    branches at the start, which the release relies on for its long schedules."""
    for module in modules:
        nn.init.kaiming_normal_(module.weight, a=0, mode="fan_in")
        module.weight.data.mul_(scale)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
