"""pcsr-lightning: PCSR pixel-level classification for fast super-resolution.

    import pcsr_lightning
    model = pcsr_lightning.load("carn-pcsr.safetensors")   # .ckpt, .safetensors, a model folder or a run
    sr = model(image, k=0.0)    # PIL image, HxWx3 numpy array or tensor in, the same type out
    model.save_pretrained("my-model")   # a model folder with its model card; pcsr_lightning.from_pretrained reads it
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)

__all__ = ["SRModel", "Upscaled", "__version__", "from_pretrained", "load"]
# The Python API, imported on first use: the console scripts import this package before torch, so that a
# Ctrl-C during their start-up imports is theirs to report (``apps.launch``).
_API = {name: "pcsr_lightning.inference.srmodel" for name in ("SRModel", "Upscaled", "from_pretrained", "load")}


def __getattr__(name: str):
    if name in _API:
        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'pcsr_lightning' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
