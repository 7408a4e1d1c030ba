"""Where the Hydra configs live: the repository's top-level ``conf/`` (the package is installed editable).

``PCSR_CONFIG_DIR`` points elsewhere, e.g. at a copy of ``conf/`` next to a non-editable install.
"""

from __future__ import annotations

import os
from pathlib import Path


def config_dir() -> Path:
    path = Path(os.environ.get("PCSR_CONFIG_DIR", Path(__file__).resolve().parents[2] / "conf"))
    if not (path / "train.yaml").is_file():
        raise FileNotFoundError(
            f"Hydra config folder not found at {path}: install from the repository with `make install` "
            "(editable), or set PCSR_CONFIG_DIR to a copy of its conf/ folder"
        )
    return path
