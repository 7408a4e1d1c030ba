"""The optional parts of the install: which ``pip install 'pcsr-lightning[EXTRA]'`` brings which package.

A plain ``pip install pcsr-lightning`` is the inference install (torch, numpy, Pillow, OmegaConf): load a
model, call it, ``pcsr upscale``, ``convert``, ``import-official``. Whatever needs more imports the package
of its extra only when it runs; a missing one is reported as ``MissingExtra``, naming the install
that brings it.
"""

from __future__ import annotations

import importlib
from types import ModuleType

# import name -> (distribution, extra); the extras themselves are written in pyproject.toml.
PACKAGES = {
    "lightning": ("lightning", "train"),
    "hydra": ("hydra-core", "train"),
    "torchmetrics": ("torchmetrics", "train"),
    "rich": ("rich", "train"),
    "wandb": ("wandb", "wandb"),
    "fvcore": ("fvcore", "flops"),
    "skimage": ("scikit-image", "demo"),
    "onnx": ("onnx", "export"),
    "onnxruntime": ("onnxruntime", "export"),
}


def install_command(*extras: str) -> str:
    return f"pip install 'pcsr-lightning[{','.join(dict.fromkeys(extras))}]'"


class MissingExtra(ModuleNotFoundError):
    """An optional package is not installed; the message names the extra that installs it."""

    def __init__(self, package: str, purpose: str):
        distribution, extra = PACKAGES[package]
        super().__init__(f"{purpose} needs {distribution}, which is not installed: {install_command(extra)}",
                         name=package)
        self.extra = extra


def missing_extra(err: ModuleNotFoundError) -> str | None:
    """The extra that brings the module ``err`` did not find, None when it is none of the optional ones."""
    if isinstance(err, MissingExtra):
        return err.extra
    top = (err.name or "").split(".")[0]
    return PACKAGES[top][1] if top in PACKAGES else None


def need(module: str, purpose: str) -> ModuleType:
    """``import module`` for an optional package (``PACKAGES``); MissingExtra when it is not installed.
    Only the code that uses the package calls this, so the inference install never imports it."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        top = module.split(".")[0]
        if top not in PACKAGES or (err.name or "").split(".")[0] != top:
            raise
        raise MissingExtra(top, purpose) from err
