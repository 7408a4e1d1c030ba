"""Import the PCSR authors' released checkpoints (``save/<name>/iter_last.pth``).

The release's dict is ``{'model': {'name', 'args', 'sd'}, ...}``. Its PCSR class index 0 is the
light upsampler; here U_0 is the heaviest, so the classifier's output rows are swapped on import.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from pcsr_lightning.config import backbone_names, backbone_node
from pcsr_lightning.io.checkpoint import (
    CheckpointError,
    NotATorchFile,
    build_model,
    check_finite,
    check_state_dict,
    load_weights,
    read_trusted,
    read_weights_only,
)
from pcsr_lightning.io.files import check_outputs
from pcsr_lightning.io.weights import output_files, save_model


def _backbone_config(name: str, args: dict, with_tail: bool) -> dict:
    """The release's backbone in this project's config: ``conf/backbone/<name>.yaml``'s original network
    (its class and, for any width the release leaves out, the release's own defaults) with the release's widths."""
    if name not in backbone_names():
        raise CheckpointError(f"unknown backbone {name!r} in release checkpoint; expected one of {backbone_names()}")
    if with_tail and args.get("no_upsampling"):
        raise CheckpointError(f"release {name} checkpoint has no upsampling tail: not an original network")
    cfg = dict(backbone_node(name)["network"])
    cfg["init"] = "release"  # an interpolation in conf/; these networks are the release's
    for key, value in cfg.items():
        if key != "scale" and isinstance(value, int):  # widths and depths, named as in the release's args
            cfg[key] = int(args.get(key, value))
    cfg["scale"] = int(args.get("upscale", args.get("scale", 4))) if with_tail else None
    return cfg


def _rgb_mean(name: str) -> list[float]:
    return [float(v) for v in backbone_node(name)["rgb_mean"]]


def _hidden(spec: dict, role: str) -> list[int]:
    try:
        return [int(x) for x in spec["args"]["imnet_spec"]["args"]["hidden_list"]]
    except (KeyError, TypeError) as err:
        raise CheckpointError(f"release checkpoint's {role} spec has no imnet hidden_list") from err


def convert_release(raw: object, source: str = "checkpoint") -> tuple[dict, dict, dict]:
    """Release dict -> (model config, state dict, meta) in this project's layout."""
    if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
        raise CheckpointError(f"{source} is not a PCSR release checkpoint: expected a dict with a 'model' entry")
    spec = raw["model"]
    missing = {"name", "args", "sd"} - set(spec)
    if missing:
        raise CheckpointError(f"{source} is not a PCSR release checkpoint: 'model' lacks {sorted(missing)}")
    name, args, sd = spec["name"], spec["args"] or {}, spec["sd"]
    tensors = isinstance(sd, dict) and all(isinstance(v, torch.Tensor) for v in sd.values())
    if not isinstance(args, dict) or not tensors:
        raise CheckpointError(f"{source} is not a PCSR release checkpoint: 'model' needs an args dict and an sd "
                              "of tensors")
    check_state_dict(sd, f"{source} ('model' sd)")
    meta = {"source": Path(source).name, "release_name": name, "iter": raw.get("iter")}  # the file name: no local path
    if name in backbone_names():
        config = {"_target_": "pcsr_lightning.models.OriginalSR", "network": _backbone_config(name, args, True),
                  "rgb_mean": _rgb_mean(name)}
        state = {f"network.{k}": v for k, v in sd.items()}
        return config, state, meta
    if name not in ("pcsr-phase0", "pcsr-phase1"):
        raise CheckpointError(
            f"{source}: unknown release model {name!r}; expected fsrcnn, carn, srresnet, pcsr-phase0 or pcsr-phase1"
        )
    enc = args.get("encoder_spec") or {}
    backbone = _backbone_config(enc.get("name"), enc.get("args") or {}, False)
    hidden = [_hidden(args.get("heavy_sampler_spec"), "heavy sampler")]
    roles = {"heavy_sampler.imnet.": "upsamplers.0."}
    if name == "pcsr-phase1":
        hidden.append(_hidden(args.get("light_sampler_spec"), "light sampler"))
        roles["light_sampler.imnet."] = "upsamplers.1."
        roles["classifier.imnet."] = "classifier."
    config = {
        "_target_": "pcsr_lightning.models.PCSR",
        "backbone": backbone,
        "upsampler_hidden": hidden,
        "classifier_hidden": _hidden(args.get("classifier_spec"), "classifier") if name == "pcsr-phase1" else [],
        "rgb_mean": _rgb_mean(enc.get("name")),
    }
    state = {}
    for key, value in sd.items():
        if key.startswith("encoder."):
            state["backbone." + key[len("encoder."):]] = value
            continue
        for old, new in roles.items():
            if key.startswith(old):
                state[new + key[len(old):]] = value
                break
        else:
            state[key] = value  # reported as unexpected by load_weights
    if name == "pcsr-phase1":
        layers = [k.split(".")[2] for k in state if k.startswith("classifier.layers.")]
        if not layers or not all(n.isdigit() for n in layers):
            raise CheckpointError(f"{source}: release pcsr-phase1 checkpoint without a classifier's layers in its sd")
        last = max(int(n) for n in layers)
        for suffix in ("weight", "bias"):
            key = f"classifier.layers.{last}.{suffix}"
            state[key] = state[key].flip(0)  # release: 0 = light, 1 = heavy
    return config, state, meta


def import_official(src: str | Path, out: str | Path, trust: bool = False, format: str | None = None,
                    overwrite: bool = True) -> Path:
    """Convert a release ``.pth`` into a project model file at ``out``: a .ckpt, a .safetensors or a model
    folder (``weights.format_of``: by the suffix, or ``format``).

    The release's files hold tensors and plain data only and load with ``weights_only=True``. A file that
    needs more could run code while loading; it is refused unless ``trust`` (the user vouches for it).
    """

    src = Path(src)
    check_outputs(output_files(out, format), inputs=[src], overwrite=overwrite)
    try:
        raw = read_weights_only(src, "release checkpoint")
    except CheckpointError as err:
        if isinstance(err, NotATorchFile) or not src.is_file() or src.stat().st_size == 0:
            raise
        if not trust:
            raise CheckpointError(f"{err}; if you trust this file completely, pass --trust-pickle") from err
        warnings.warn(f"{src}: loading with full unpickling (--trust-pickle): this can run any code in the file",
                      stacklevel=2)
        raw = read_trusted(src)
    config, state, meta = convert_release(raw, str(src))
    check_finite(check_state_dict(state, src), src)
    model = build_model(config)
    load_weights(model, state, str(src))
    return save_model(out, model, config, meta, format)
