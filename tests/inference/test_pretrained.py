"""A model to share: save_pretrained / from_pretrained on the model folder, its generated model card, and
metadata without the local paths it was made from."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import pcsr_lightning
from factories import save_tiny
from pcsr_lightning.apps.cli import main
from pcsr_lightning.inference.pretrained import CITATION
from pcsr_lightning.io.checkpoint import CheckpointError
from pcsr_lightning.io.safetensors_format import read_safetensors
from pcsr_lightning.io.weights import is_absolute_path, load_model, portable_meta
from pcsr_lightning.models import FSRCNN

ROOT = Path(__file__).resolve().parents[2]


def strings(value):
    """Every string inside a JSON value, keys included."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)
    elif isinstance(value, str):
        yield value


def assert_no_local_path(folder: Path, tmp_path: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    _, metadata = read_safetensors(folder / "model.safetensors")
    for where, value in (("config.json", config), ("model.safetensors", metadata)):
        rooted = [s for s in strings(value) if s.startswith(os.sep) or is_absolute_path(s)]
        assert rooted == [], (where, rooted)
    for name in ("config.json", "README.md"):
        assert str(tmp_path) not in (folder / name).read_text(), name


@pytest.fixture
def photo():
    return (np.random.default_rng(0).random((10, 9, 3)) * 255).astype(np.uint8)


def test_save_pretrained_and_from_pretrained_round_trip(tmp_path, photo):
    model = pcsr_lightning.load(save_tiny(tmp_path / "tiny.ckpt"), device="cpu")
    folder = model.save_pretrained(tmp_path / "shared", results=[{"dataset": "Test2K", "scale": 4, "k": 0.0,
                                                                  "psnr": 25.5, "gflops": 1.25}], license="mit")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    again = pcsr_lightning.from_pretrained(folder, device="cpu")
    same = pcsr_lightning.SRModel.from_pretrained(folder, device="cpu")
    np.testing.assert_array_equal(again(photo, k=0.5), model(photo, k=0.5))
    np.testing.assert_array_equal(same(photo), model(photo))
    assert again.loaded.meta["license"] == "mit" and again.loaded.meta["results"][0]["psnr"] == 25.5
    # Saved again without results: the folder keeps the ones it has.
    kept = again.save_pretrained(tmp_path / "again")
    assert load_model(kept).meta["results"] == again.loaded.meta["results"]


def test_a_model_running_in_bfloat16_is_shared_in_float32(tmp_path, photo):
    model = pcsr_lightning.load(save_tiny(tmp_path / "tiny.ckpt"), device="cpu", dtype="bfloat16")
    folder = model.save_pretrained(tmp_path / "shared")
    state, _ = read_safetensors(folder / "model.safetensors")
    assert {t.dtype for t in state.values() if t.is_floating_point()} == {torch.float32}
    assert next(model.network.parameters()).dtype == torch.bfloat16  # the model itself is left as it runs


def test_the_card_says_what_the_folder_holds(tmp_path):
    model = pcsr_lightning.load(save_tiny(tmp_path / "tiny.ckpt", num_classes=3), device="cpu")
    folder = model.save_pretrained(tmp_path / "carn-pcsr-tiny",
                                   results=[{"dataset": "Urban100", "k": 0.5, "psnr": 24.125, "gflops": 3.5}])
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: unknown\nlibrary_name: pcsr-lightning\n")
    assert "# carn-pcsr-tiny" in card and "backbone CARN (group=4, nf=16)" in card
    assert "3 upsampler(s) of hidden widths [[24, 24], [12], [6]]" in card and "| classes | 3 " in card
    costs = ", ".join(f"{c:.4f}" for c in model.cost_list(4).tolist())
    assert f"| cost list at x4 (heavy..light) | {costs} |" in card
    assert f"| parameters | {sum(p.numel() for p in model.network.parameters()):,} |" in card
    assert "| Urban100 |  | 0.5 | 24.12 | 3.50 |" in card
    assert f"```bibtex\n{CITATION}\n```" in card
    assert CITATION in (ROOT / "README.md").read_text()  # the citation is the README's


def test_an_original_network_card_and_bad_results(tmp_path):
    model = pcsr_lightning.load(save_tiny(tmp_path / "orig.ckpt", kind="original"), device="cpu")
    card = (model.save_pretrained(tmp_path / "orig") / "README.md").read_text()
    assert "| scale | x4 only |" in card and "Not measured for this file" in card and "cost list" not in card
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['ssim'\]"):
        model.save_pretrained(tmp_path / "bad", results=[{"dataset": "x", "psnr": 30.0, "ssim": 0.9}])
    with pytest.raises(ValueError, match="needs a dataset name and a finite psnr"):
        model.save_pretrained(tmp_path / "bad", results=[{"dataset": "x", "psnr": float("nan")}])
    with pytest.raises(ValueError, match="license must be"):
        model.save_pretrained(tmp_path / "bad", license=" ")
    assert not (tmp_path / "bad").exists()  # refused before anything is written


def test_from_pretrained_reads_a_model_folder_only(tmp_path):
    ckpt = save_tiny(tmp_path / "tiny.ckpt")
    with pytest.raises(CheckpointError, match="a file, not a folder.*pcsr_lightning.load also reads"):
        pcsr_lightning.from_pretrained(ckpt)
    with pytest.raises(CheckpointError, match="not found"):
        pcsr_lightning.from_pretrained(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no config.json in it"):
        pcsr_lightning.from_pretrained(tmp_path / "empty")


def test_imported_and_converted_folders_keep_no_local_path(tmp_path, capsys):
    net = FSRCNN(d=8, s=4, m=1, scale=4)
    release = tmp_path / "deep" / "save" / "fsrcnn-x4.pth"
    release.parent.mkdir(parents=True)
    torch.save({"model": {"name": "fsrcnn", "args": {"d": 8, "s": 4, "m": 1, "upscale": 4}, "sd": net.state_dict()}},
               release)
    assert main(["import-official", "--src", str(release), "--out", str(tmp_path / "imported")]) == 0
    assert_no_local_path(tmp_path / "imported", tmp_path)
    assert load_model(tmp_path / "imported").meta["source"] == "fsrcnn-x4.pth"
    assert "x4 only" in (tmp_path / "imported" / "README.md").read_text()

    ckpt = save_tiny(tmp_path / "deep" / "tiny.ckpt")
    assert main(["convert", str(ckpt), "--out", str(tmp_path / "converted"), "--license", "cc-by-4.0"]) == 0
    assert_no_local_path(tmp_path / "converted", tmp_path)
    card = (tmp_path / "converted" / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "converted_from tiny.ckpt" in card
    # A .safetensors file carries the same metadata in its header.
    assert main(["convert", str(tmp_path / "converted"), "--out", str(tmp_path / "one.safetensors")]) == 0
    _, metadata = read_safetensors(tmp_path / "one.safetensors")
    assert not [s for s in strings({k: json.loads(v) if v[:1] in "{[" else v for k, v in metadata.items()})
                if is_absolute_path(s)]
    capsys.readouterr()


def test_portable_meta_keeps_file_names_of_absolute_paths_only():
    meta = {"a": "/home/me/runs/x.ckpt", "b": ["C:\\Users\\me\\y.pth", "rel/z.pth", "~/w.pth"], "c": 3,
            "d": {"e": "\\\\server\\share\\v.pth", "f": "plain text"}}
    assert portable_meta(meta) == {"a": "x.ckpt", "b": ["y.pth", "rel/z.pth", "w.pth"], "c": 3,
                                   "d": {"e": "v.pth", "f": "plain text"}}
    assert re.fullmatch(r"[^/\\]+", portable_meta("/tmp/dir/"))
