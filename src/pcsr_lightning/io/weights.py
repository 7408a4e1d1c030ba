"""Every file a model can be loaded from or saved to, behind two calls: ``load_model`` and ``save_model``.

- ``.ckpt``: the project's torch checkpoint (``checkpoint.py``);
- ``.safetensors``: the weights, with the model config and metadata as JSON in the header's metadata
  (so the file alone rebuilds the network, as SR tools that move weights as safetensors expect);
- a model folder: ``config.json`` (model config and metadata) beside ``model.safetensors``, the layout
  model hubs serve, and its model card ``README.md`` (written by ``inference.pretrained``);
- a training run's folder or its ``manifest.json``: the run's final checkpoint.

Every path builds only the allow-listed model classes (``checkpoint.build_model``) and checks every tensor
against the network it builds, so a file is data and never decides which code runs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pcsr_lightning.io.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    LoadedModel,
    build_model,
    check_finite,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from pcsr_lightning.io.files import atomic_write
from pcsr_lightning.io.manifest import FILENAME as MANIFEST
from pcsr_lightning.io.manifest import Manifest
from pcsr_lightning.io.safetensors_format import SafetensorsError, read_safetensors, write_safetensors
from pcsr_lightning.io.sniff import CKPT, SAFETENSORS, file_kind
from pcsr_lightning.models.pcsr import model_kind

FORMATS = ("ckpt", "safetensors", "folder")
FOLDER_CONFIG = "config.json"
FOLDER_WEIGHTS = "model.safetensors"
CARD = "README.md"  # a model folder's model card
# The metadata keys of a project safetensors file (every value a string, as the format requires).
KEY_FORMAT, KEY_VERSION, KEY_KIND, KEY_CONFIG, KEY_META = "format", "format_version", "kind", "model_config", "meta"


SUFFIXES = {".ckpt": "ckpt", ".pt": "ckpt", ".pth": "ckpt", ".safetensors": "safetensors", "": "folder"}


def format_of(path: str | Path, format: str | None = None) -> str:
    """The format a model is written in, by one rule: the suffix names it (.ckpt/.pt/.pth, .safetensors,
    none: a model folder) and ``format``, when given, must be the same; a folder may have another suffix
    when ``format`` is ``folder``. So every file written reads back under its own name."""
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {list(FORMATS)}, got {format!r}")
    suffix = Path(path).suffix.lower()
    implied = SUFFIXES.get(suffix)
    if implied is None and format != "folder":
        raise ValueError(f"{path}: cannot tell the format from the suffix {suffix!r}; use .ckpt, .safetensors or "
                         f"a folder name without a suffix (or --format folder for a folder)")
    if format is not None and implied is not None and implied != format:
        means = {"ckpt": "a .ckpt file", "safetensors": "a .safetensors file", "folder": "a model folder"}[implied]
        raise ValueError(f"{path}: its suffix {suffix or '(none)'} means {means}, but --format {format} was asked; "
                         f"the suffix and --format must agree (drop --format, or name the output for {format})")
    return format or implied


def model_reads(source: str | Path | None) -> list[Path]:
    """What loading a model from ``source`` reads, for the output checks: the file or folder itself and,
    for a run's ``manifest.json``, the run folder (outputs may be neither, nor lie inside a folder)."""
    if source is None:
        return []
    path = Path(source)
    return [path, path.parent] if path.name == MANIFEST else [path]


def output_files(path: str | Path, format: str | None = None) -> list[Path]:
    """The files ``save_model`` writes for ``path``: what a command checks before it writes anything."""
    path = Path(path)
    return [path / FOLDER_WEIGHTS, path / FOLDER_CONFIG, path / CARD] if format_of(path, format) == "folder" else [path]


def _header(kind: str, config: dict, meta: dict | None) -> dict[str, Any]:
    return {KEY_FORMAT: FORMAT, KEY_VERSION: FORMAT_VERSION, KEY_KIND: kind, KEY_CONFIG: config,
            KEY_META: portable_meta(meta or {})}


def is_absolute_path(text: str) -> bool:
    """A path rooted on this machine: /home/..., ~/..., C:\\... or \\\\server\\share."""
    return text.startswith(("/", "~", "\\\\")) or bool(re.match(r"^[A-Za-z]:[\\/]", text))


def portable_meta(value: Any) -> Any:
    """Metadata without the local paths a file was made from: an absolute path keeps its file name only
    (a model file is shared; where it came from on one machine means nothing on the next)."""
    if isinstance(value, dict):
        return {k: portable_meta(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [portable_meta(v) for v in value]
    if isinstance(value, str) and is_absolute_path(value):
        return re.split(r"[\\/]", value.rstrip("/\\"))[-1]
    return value


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(value, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"the {what} cannot be written as JSON: {err}") from err


def save_model(path: str | Path, model: nn.Module, config: dict, meta: dict | None = None,
               format: str | None = None) -> Path:
    """Write ``model`` (rebuilt later from ``config``) as a .ckpt, a .safetensors or a model folder."""
    path, fmt = Path(path), format_of(path, format)
    if fmt == "ckpt":
        return save_checkpoint(path, model, config, portable_meta(meta or {}))
    header = _header(model_kind(model), config, meta)
    if fmt == "safetensors":
        metadata = {key: value if isinstance(value, str) else _json(value, key) for key, value in header.items()}
        return write_safetensors(path, _state(model), metadata)
    if path.exists() and not path.is_dir():
        raise CheckpointError(f"{path} is a file; a model folder is written as a folder")
    path.mkdir(parents=True, exist_ok=True)
    write_safetensors(path / FOLDER_WEIGHTS, _state(model))
    # The config is written last: a folder without it is an interrupted write, never a model.
    text = _json(header, "model config") + "\n"
    atomic_write(path / FOLDER_CONFIG, lambda tmp: Path(tmp).write_text(text))
    return path


def _parse(text: str, key: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as err:
        raise CheckpointError(f"{path}: its {key!r} entry is not valid JSON: {err}") from err


def _check_header(header: Any, path: Path) -> tuple[dict, dict]:
    """(model config, meta) of a project safetensors header or folder config, every field checked."""
    if not isinstance(header, dict) or header.get(KEY_FORMAT) != FORMAT:
        raise CheckpointError(f"{path} is not a pcsr-lightning model file (no {KEY_FORMAT}={FORMAT!r} in its "
                              "metadata): its weights come without the config that rebuilds the network")
    version = header.get(KEY_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{path} was written by a newer pcsr-lightning (format {version!r})")
    config, meta = header.get(KEY_CONFIG), header.get(KEY_META, {})
    if not isinstance(config, dict):
        raise CheckpointError(f"{path}: its {KEY_CONFIG!r} is not a model config (a JSON object)")
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: its {KEY_META!r} is not a JSON object")
    return config, meta


def _safetensors_header(metadata: dict[str, str], path: Path) -> dict[str, Any]:
    header: dict[str, Any] = dict(metadata)
    for key in (KEY_VERSION, KEY_CONFIG, KEY_META):
        if key in header:
            header[key] = _parse(header[key], key, path)
    return header


def _build(config: dict, meta: dict, state: dict[str, torch.Tensor], path: Path,
           map_location: str | torch.device) -> LoadedModel:
    check_finite(state, path)
    try:
        model = build_model(config)
    except CheckpointError as err:
        raise CheckpointError(f"{path}: {err}") from err
    load_weights(model, state, str(path))
    model.eval()
    model.to(map_location)
    return LoadedModel(model, model_kind(model), config, meta)


def _read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    try:
        return read_safetensors(path)
    except SafetensorsError as err:
        raise CheckpointError(str(err)) from err


def load_safetensors(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    path = Path(path)
    state, metadata = _read_weights(path)
    config, meta = _check_header(_safetensors_header(metadata, path), path)
    return _build(config, meta, state, path, map_location)


def load_folder(path: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    path = Path(path)
    config_path, weights_path = path / FOLDER_CONFIG, path / FOLDER_WEIGHTS
    if not config_path.is_file():
        raise CheckpointError(f"{path}: no {FOLDER_CONFIG} (a model folder holds {FOLDER_CONFIG} and "
                              f"{FOLDER_WEIGHTS}, a training run its {MANIFEST})")
    try:
        header = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise CheckpointError(f"{config_path} is not readable JSON: {err}") from err
    config, meta = _check_header(header, config_path)
    state, _ = _read_weights(weights_path)
    return _build(config, meta, state, weights_path, map_location)


def run_checkpoint(path: str | Path) -> Path:
    """The final checkpoint of a training run, given its folder or its ``manifest.json``."""
    path = Path(path)
    run_dir = path.parent if path.name == MANIFEST else path
    manifest = Manifest.load(run_dir)
    running = [s.name for s in manifest.stages if s.status != "done"]
    if running:
        raise CheckpointError(f"{run_dir}: stages {running} are not done; the run has not finished")
    if manifest.final_checkpoint is None or not Path(manifest.final_checkpoint).is_file():
        raise CheckpointError(f"{run_dir}: its final checkpoint {manifest.final_checkpoint} does not exist")
    return Path(manifest.final_checkpoint)


def load_model(source: str | Path, map_location: str | torch.device = "cpu") -> LoadedModel:
    """A model from any file or folder this project writes (see the module doc), in eval mode."""
    path = Path(source)
    if path.is_dir():
        if (path / MANIFEST).is_file() and not (path / FOLDER_CONFIG).is_file():
            return load_checkpoint(run_checkpoint(path), map_location)
        return load_folder(path, map_location)
    if path.name == MANIFEST:
        return load_checkpoint(run_checkpoint(path), map_location)
    if not path.exists():
        raise CheckpointError(f"model file not found: {path}")
    try:
        kind = file_kind(path) if path.stat().st_size else CKPT  # (the checkpoint reader names an empty file)
    except OSError as err:
        raise CheckpointError(f"cannot read {path}: {err.strerror or err}") from err
    if kind == SAFETENSORS:
        return load_safetensors(path, map_location)
    if kind == CKPT:
        return load_checkpoint(path, map_location)
    raise CheckpointError(f"{path} is not a model file (a .ckpt, a .safetensors, a model folder or a training "
                          f"run): its content is {kind}")
