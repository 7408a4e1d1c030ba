"""The project's checkpoint format, read by every command.

A checkpoint is a plain dict (loadable with ``weights_only=True``): the model's Hydra config
(``_target_`` classes inside ``pcsr_lightning`` only), its state dict, and free-form metadata.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pcsr_lightning.io.files import atomic_write

FORMAT = "pcsr-lightning"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message says what does not match."""


@dataclass
class LoadedModel:
    model: nn.Module
    kind: str  # "pcsr" or "original"
    config: dict
    meta: dict = field(default_factory=dict)

    @property
    def is_pcsr(self) -> bool:
        return self.kind == "pcsr"


def _check_targets(cfg: Any, where: str = "model") -> None:
    if isinstance(cfg, dict):
        target = cfg.get("_target_")
        if target is not None and not str(target).startswith("pcsr_lightning."):
            raise CheckpointError(f"refusing to build {target!r} at {where}: only pcsr_lightning classes are allowed")
        for key, value in cfg.items():
            _check_targets(value, f"{where}.{key}")
    elif isinstance(cfg, list):
        for i, value in enumerate(cfg):
            _check_targets(value, f"{where}[{i}]")


def build_model(config: dict) -> nn.Module:
    """Instantiate a model from its ``_target_`` config."""
    from hydra.utils import instantiate

    _check_targets(config)
    return instantiate(config, _convert_="all")


def model_kind(model: nn.Module) -> str:
    from pcsr_lightning.models import PCSR

    return "pcsr" if isinstance(model, PCSR) else "original"


def load_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    """Strict load with an error that lists what does not match."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state_dict))
        if tuple(own[key].shape) != tuple(state_dict[key].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing keys {missing[:8]}{' ...' if len(missing) > 8 else ''}")
        if unexpected:
            parts.append(f"unexpected keys {unexpected[:8]}{' ...' if len(unexpected) > 8 else ''}")
        if shapes:
            parts.append(f"shape mismatches {shapes[:8]}")
        raise CheckpointError(f"{source}: weights do not fit the model: " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def save_checkpoint(path: str | Path, model: nn.Module, config: dict, meta: dict | None = None) -> Path:
    """Write atomically; ``config`` must rebuild ``model`` (checked by the loader)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "kind": model_kind(model),
        "model": config,
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "meta": dict(meta or {}),
    }
    return atomic_write(path, lambda tmp: torch.save(payload, tmp))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a project checkpoint into an eval-mode model."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        hint = ""
        if "weights_only" in str(err) or "Unsupported global" in str(err):
            hint = " (a PCSR release checkpoint? convert it first with `pcsr import-official`)"
        raise CheckpointError(f"{path} is not a pcsr-lightning checkpoint{hint}: {str(err).splitlines()[0]}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if isinstance(payload, dict) and "model" in payload and isinstance(payload["model"], dict) and "sd" in payload["model"]:
            hint = "; it looks like a PCSR release checkpoint: convert it with `pcsr import-official`"
        raise CheckpointError(f"{path} is not a pcsr-lightning checkpoint (no format={FORMAT!r} entry){hint}")
    if payload.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer pcsr-lightning (format {payload['format_version']})")
    model = build_model(payload["model"])
    load_weights(model, payload["state_dict"], str(path))
    model.eval()
    model.to(map_location)
    return LoadedModel(model, model_kind(model), payload["model"], payload.get("meta", {}))
