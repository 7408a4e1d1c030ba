"""Shared fixtures. Released checkpoints come from ../shared/reference/official-pcsr when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from bad_input_kit import save_tiny_ckpt
from pcsr_lightning.data.sources import sample_photo  # the tests' real photos (imported from here too)

ROOT = Path(__file__).resolve().parents[1]
OFFICIAL = Path(os.environ.get("PCSR_OFFICIAL_DIR", ROOT.parent / "shared" / "reference" / "official-pcsr"))
RELEASE_FILES = ("fsrcnn-x4", "fsrcnn-pcsr-phase1", "carn-x4", "carn-pcsr-phase1")


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def ckpt(tmp_path) -> Path:
    """A tiny PCSR checkpoint (``bad_input_kit.save_tiny_ckpt``); modules with a model of their own override it."""
    return save_tiny_ckpt(tmp_path)


@pytest.fixture
def photos(tmp_path) -> Path:
    """A folder with one small real photo, ``cat.png`` (a 24x32 crop of chelsea)."""
    folder = tmp_path / "photos"
    folder.mkdir()
    img = (sample_photo("chelsea")[:, :24, :32] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(folder / "cat.png")
    return folder


@pytest.fixture(scope="session")
def official_ckpts(tmp_path_factory) -> dict[str, Path]:
    """The four release checkpoints imported into the project format (skipped when absent)."""
    missing = [n for n in RELEASE_FILES if not (OFFICIAL / f"{n}.pth").is_file()]
    if missing:
        pytest.skip(f"released PCSR checkpoints not found in {OFFICIAL} (missing {missing}); set PCSR_OFFICIAL_DIR")
    from pcsr_lightning.io.official import import_official

    out = tmp_path_factory.mktemp("official")
    return {n: import_official(OFFICIAL / f"{n}.pth", out / f"{n}.ckpt") for n in RELEASE_FILES}
