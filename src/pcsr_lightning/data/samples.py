"""The held-out scikit-image sample photos as a small test set: the default data of ``make reproduce-table``.

Only the photos the ``samples`` training data keeps aside (its ``val`` split in conf/data/samples.yaml, the
one place the split is written): a table measured on training images would flatter every model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from omegaconf import OmegaConf

from pcsr_lightning.config import config_dir
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.io.images import write_png


def sample_split(split: str) -> list[str]:
    """Names of the ``train`` or ``val`` photos of conf/data/samples.yaml."""

    node = OmegaConf.load(config_dir() / "data" / "samples.yaml")
    if split not in ("train", "val"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'val'")
    return [str(n) for n in node[split].names]


def materialize_samples(folder: str | Path, names: Sequence[str] | None = None) -> Path:
    """Write the photos (default: the held-out ones) as RGB PNGs into ``folder`` (kept if already there)."""
    folder = Path(folder)
    for name in sample_split("val") if names is None else names:
        path = folder / f"{name}.png"
        if not path.is_file():
            write_png(sample_photo(name), path)
    return folder
