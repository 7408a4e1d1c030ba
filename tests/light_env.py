"""A Python process that sees this environment as the plain ``pip install pcsr-lightning`` leaves it: the
optional packages (training stack, wandb, fvcore, scikit-image, export tools) absent.

The process runs without ``site`` (``python -S``) on a folder of links to this environment's site-packages,
every entry of the optional distributions left out (found from their RECORD files), so an import of one
fails as it does where it was never installed, and ``importlib.util.find_spec`` finds nothing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from importlib import metadata
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
# Distributions of the extras (and what only the test tools bring), as pip names them.
OPTIONAL = ("lightning", "pytorch-lightning", "lightning-fabric", "hydra-core", "hydra-submitit-launcher",
            "torchmetrics", "rich", "wandb", "fvcore", "scikit-image", "onnx", "onnxruntime", "tensorboard")
# Their import names, checked in the child's sys.modules.
HEAVY = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "torchmetrics", "rich", "wandb", "fvcore",
         "skimage", "onnx", "onnxruntime", "tensorboard")


def _entries(dist: metadata.Distribution) -> set[str]:
    """The site-packages entries one installed distribution owns (top-level folders and modules)."""
    names = set()
    for file in dist.files or []:
        first = Path(file).parts[0]
        if first != ".." and not first.endswith(".pth") and first != "__pycache__":
            names.add(first)
    return names


def light_site(folder: Path) -> Path:
    """A folder of links to every site-packages entry except those of the ``OPTIONAL`` distributions."""
    site = Path(sysconfig.get_paths()["purelib"])
    hidden = set()
    for name in OPTIONAL:
        try:
            hidden |= _entries(metadata.distribution(name))
        except metadata.PackageNotFoundError:
            continue
    folder.mkdir(parents=True, exist_ok=True)
    for entry in site.iterdir():
        if entry.name not in hidden and not entry.name.endswith(".pth") and entry.name != "__pycache__":
            (folder / entry.name).symlink_to(entry)
    return folder


def run_light(site: Path, code: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """``code`` in a fresh ``python -S`` seeing only ``site`` and the checkout's ``src``; its last stdout
    line is expected to be left for the caller (see ``heavy_report``)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), str(site)])}
    env.pop("PCSR_CONFIG_DIR", None)
    return subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout)


# Appended to the child's code: one JSON line with the optional packages that got imported.
HEAVY_REPORT = ("\nimport json as _j, sys as _s\nprint(_j.dumps(sorted(m for m in _s.modules "
                f"if m.split('.')[0] in {list(HEAVY)!r})))\n")


def imported_heavy(stdout: str) -> list[str]:
    return json.loads(stdout.strip().splitlines()[-1])
