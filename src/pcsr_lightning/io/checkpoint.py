"""The project's checkpoint format, read by every command.

A checkpoint is a plain dict (loadable with ``weights_only=True``): the model's Hydra config, its
state dict, and free-form metadata. The config is built by ``build_model``, which accepts only the model
classes registered in ``models.registry`` (and those the user names in ``PCSR_ALLOW_CLASSES``) with plain data as
arguments: a checkpoint is data and never decides which code runs.
"""

from __future__ import annotations

import importlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pcsr_lightning.io.files import atomic_write
from pcsr_lightning.io.sniff import CKPT, SAFETENSORS, file_kind
from pcsr_lightning.models import model_classes, model_kind

FORMAT = "pcsr-lightning"
FORMAT_VERSION = 1
ALLOW_ENV = "PCSR_ALLOW_CLASSES"  # comma-separated ``module.Class`` names of the user's own model classes
PLAIN = (type(None), bool, int, float, str)


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message says what does not match."""


class NotATorchFile(CheckpointError):
    """A file whose first bytes are no torch checkpoint's (no unpickler, trusted or not, can read it)."""


@dataclass
class LoadedModel:
    model: nn.Module
    kind: str  # "pcsr" or "original"
    config: dict
    meta: dict = field(default_factory=dict)

    @property
    def is_pcsr(self) -> bool:
        return self.kind == "pcsr"


def user_classes(names: str | None = None) -> dict[str, type]:
    """The user's own model classes, named ``module.Class`` (comma-separated) in ``PCSR_ALLOW_CLASSES``.

    Importing the named module runs its code: that is the user's explicit choice, never a checkpoint's.
    """

    found = {}
    text = os.environ.get(ALLOW_ENV, "") if names is None else names
    for name in filter(None, (n.strip() for n in text.split(","))):
        module, _, attr = name.rpartition(".")
        if not module or not attr.isidentifier():
            raise CheckpointError(f"{ALLOW_ENV}: {name!r} is not a module.Class name")
        try:
            cls = vars(importlib.import_module(module)).get(attr)
        except ImportError as err:
            raise CheckpointError(f"{ALLOW_ENV}: cannot import {module!r} for {name!r}: {err}") from err
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            raise CheckpointError(f"{ALLOW_ENV}: {name!r} is not a torch.nn.Module class defined in {module}")
        found[name] = cls
    return found


def _build(cfg: Any, allowed: dict[str, type], where: str) -> Any:
    """Plain data stays data; a dict with ``_target_`` becomes an instance of an allowed class."""
    if isinstance(cfg, float) and not math.isfinite(cfg):
        raise CheckpointError(f"refusing {cfg!r} at {where}: every number of a model config must be finite")
    if isinstance(cfg, PLAIN):
        return cfg
    if isinstance(cfg, (list, tuple)):
        return [_build(v, allowed, f"{where}[{i}]") for i, v in enumerate(cfg)]
    if not isinstance(cfg, dict):
        raise CheckpointError(f"refusing {type(cfg).__name__} at {where}: a model config holds plain data only")
    if any(not isinstance(key, str) for key in cfg):
        raise CheckpointError(f"refusing a non-string key at {where}")
    special = sorted(key for key in cfg if key.startswith("_") and key.endswith("_") and key != "_target_")
    if special:
        raise CheckpointError(f"refusing {special} at {where}: a model config names a class and its arguments only")
    target = cfg.get("_target_")
    cls = allowed.get(target) if isinstance(target, str) else None
    if "_target_" in cfg and cls is None:  # checked before anything below it is built
        raise CheckpointError(
            f"refusing to build {target!r} at {where}: not one of the project's model classes; to allow a model "
            f"class of your own, name it in {ALLOW_ENV} (module.Class, comma-separated)"
        )
    args = {key: _build(value, allowed, f"{where}.{key}") for key, value in cfg.items() if key != "_target_"}
    for key, value in args.items():
        _check_typed(key, value, f"{where}.{key}")
    if cls is None:
        return args
    try:
        return cls(**args)
    except Exception as err:  # noqa: BLE001 - an argument of the wrong kind fails anywhere in a constructor
        raise CheckpointError(f"cannot build {target} at {where}: {first_line(err)}") from err


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_typed(key: str, value: Any, where: str) -> None:
    """The config entries every model reads, checked by their meaning: the mean subtracted from the
    input (three finite numbers) and the upscaling factor (a number > 1, or null)."""
    if key == "rgb_mean" and not (isinstance(value, list) and len(value) == 3 and all(map(_is_number, value))):
        raise CheckpointError(f"refusing {value!r} at {where}: rgb_mean must be a list of three finite numbers")
    if key == "scale" and value is not None and not (_is_number(value) and value > 1):
        raise CheckpointError(f"refusing {value!r} at {where}: the scale must be a number > 1 (or null)")


def build_model(config: dict, allow: str | None = None) -> nn.Module:
    """Instantiate a model from its ``_target_`` config, allowing only model classes (see ``model_classes``
    and ``user_classes``; ``allow`` replaces ``PCSR_ALLOW_CLASSES`` when given)."""
    if not isinstance(config, dict) or "_target_" not in config:
        raise CheckpointError("the model config is not a dict with a _target_")
    model = _build(config, {**model_classes(), **user_classes(allow)}, "model")
    if not isinstance(model, nn.Module):
        raise CheckpointError(f"model config builds a {type(model).__name__}, not a network")
    return model


def check_state_dict(state_dict: object, source: str | Path) -> dict:
    """A dict of tensors under string keys (anything else would fail later without naming the file)."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{source}: its state_dict is not a dict of tensors")
    for key, value in state_dict.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{source}: its state_dict has a non-string key {key!r} ({type(key).__name__})")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{source}: its state_dict entry {key!r} is a {type(value).__name__}, not a tensor")
    return state_dict


def check_finite(state_dict: dict, source: str | Path) -> None:
    """Refuse NaN or inf in any floating-point tensor: such weights give NaN images or a NaN loss much
    later, far from the file that caused them. Integer tensors (BatchNorm's step count) cannot hold either."""
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor) or not (value.is_floating_point() or value.is_complex()):
            continue
        finite = torch.isfinite(value)
        if not bool(finite.all()):
            bad = int(finite.numel() - finite.sum())
            raise CheckpointError(f"{source}: tensor {key!r} has {bad:,} non-finite value(s) (NaN or inf) out of "
                                  f"{value.numel():,}; refusing weights that cannot give a finite image")


def _dtype_kind(tensor: torch.Tensor) -> str:
    return "floating-point" if tensor.is_floating_point() else "complex" if tensor.is_complex() else \
        "boolean" if tensor.dtype == torch.bool else "integer"


def load_weights(model: nn.Module, state_dict: dict, source: str) -> None:
    """Strict load with an error that lists what does not match: keys, shapes, and the kind of number
    (an integer tensor where a float weight belongs would be cast silently into nonsense weights)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = [
        f"{key}: checkpoint {tuple(state_dict[key].shape)} vs model {tuple(own[key].shape)}"
        for key in sorted(set(own) & set(state_dict))
        if tuple(own[key].shape) != tuple(state_dict[key].shape)
    ]
    kinds = [f"tensor {key!r} is {state_dict[key].dtype} where the model's is {own[key].dtype} (a "
             f"{_dtype_kind(own[key])} tensor)" for key in sorted(set(own) & set(state_dict))
             if _dtype_kind(own[key]) != _dtype_kind(state_dict[key])]
    if kinds:
        raise CheckpointError(f"{source}: {kinds[0]}" + (f" (and {len(kinds) - 1} more)" if len(kinds) > 1 else ""))
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


def first_line(err: BaseException) -> str:
    """The first line of an error's message, or its type when the message is empty."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_release_layout(payload: object) -> bool:
    """The PCSR release's dict: ``{'model': {'name': str, 'args': dict, 'sd': {name: tensor}}, ...}``."""
    spec = payload.get("model") if isinstance(payload, dict) else None
    return (isinstance(spec, dict) and isinstance(spec.get("name"), str) and isinstance(spec.get("sd"), dict)
            and isinstance(spec.get("args"), (dict, type(None)))
            and all(isinstance(v, torch.Tensor) for v in spec["sd"].values()))


def read_weights_only(path: str | Path, what: str = "checkpoint") -> object:
    """``torch.load(weights_only=True)``: tensors and plain data only, no code runs. Clear errors for a
    missing, empty or unreadable file, and for one that needs arbitrary objects to load."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{what} {path} is a folder, not a file")
    if not path.is_file():
        raise CheckpointError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes): an interrupted download or copy?")
    check_torch_file(path)
    try:
        with open(path, "rb") as f:  # a file object: torch reads the content, whatever the file's suffix
            return torch.load(f, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        needs = re.search(r"unsupported global:?\s*(?:GLOBAL\s+)?([\w.]+)", str(err), re.IGNORECASE)
        if needs:
            raise CheckpointError(
                f"{path} needs the Python object {needs.group(1)} to load, beyond tensors and plain data; "
                "loading it could run code, so it is refused"
            ) from err
        detail = next((line for line in str(err).splitlines() if line.startswith("Unsupported")), "")
        raise CheckpointError(f"{path} cannot be read as a PyTorch checkpoint: "
                              f"{detail.strip() or first_line(err)}") from err


def check_torch_file(path: Path) -> None:
    """By its first bytes, the file is what ``torch.load`` reads (a zip archive or a pickle); anything
    else is named for what it is, not reported as an unpickler's opcode."""
    try:
        kind = file_kind(path)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    if kind == SAFETENSORS:
        raise NotATorchFile(f"{path} is a safetensors file, not a PyTorch checkpoint (a zip archive or a "
                              "pickle); `pcsr convert` writes it as a .ckpt")
    if kind != CKPT:
        raise NotATorchFile(f"{path} is not a PyTorch checkpoint (a zip archive or a pickle): its content is "
                              f"{kind}")


def read_trusted(path: str | Path) -> object:
    """``torch.load(weights_only=False)``: full unpickling, which can run any code in the file. Only for a
    file the user vouches for (``--trust-pickle``) once ``read_weights_only`` has refused it."""
    try:
        with open(path, "rb") as f:
            return torch.load(f, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means the same thing here
        raise CheckpointError(f"{path} cannot be read as a PyTorch checkpoint: {first_line(err)}") from err


def describe_checkpoint(path: str | Path) -> tuple[str, str]:
    """(kind, backbone class name) of a project checkpoint, read without building the model."""
    payload = read_weights_only(path)
    model = payload.get("model") if isinstance(payload, dict) else None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or not isinstance(model, dict):
        raise CheckpointError(f"{path} is not a pcsr-lightning checkpoint")
    kind = payload.get("kind")
    trunk = model.get("backbone" if kind == "pcsr" else "network")
    target = trunk.get("_target_") if isinstance(trunk, dict) else None
    cls = model_classes().get(target) if isinstance(target, str) else None
    return str(kind), cls.__name__ if cls is not None else str(target)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """Load a project checkpoint into an eval-mode model; nothing in the file can run code."""
    path = Path(path)
    payload = read_weights_only(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        hint = ""
        if is_release_layout(payload):
            hint = "; it has the PCSR release's layout: convert it with `pcsr import-official`"
        raise CheckpointError(f"{path} is not a pcsr-lightning checkpoint (no format={FORMAT!r} entry){hint}")
    if not isinstance(payload.get("format_version"), int) or payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer pcsr-lightning (format {payload.get('format_version')})")
    state = check_state_dict(payload.get("state_dict"), path)
    check_finite(state, path)
    try:
        model = build_model(payload.get("model"))
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    load_weights(model, state, str(path))
    model.eval()
    model.to(map_location)
    meta = payload.get("meta")
    return LoadedModel(model, model_kind(model), payload["model"], meta if isinstance(meta, dict) else {})
