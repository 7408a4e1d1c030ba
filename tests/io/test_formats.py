"""Formats are told by content when reading and by one rule when writing: a renamed model file still
loads, a file that is no model says what it is, an output's suffix and --format agree or the command
refuses, and every file a command writes is read back here by the project's own readers."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from bad_input_kit import TINY_CONFIG, run_cli, snapshot, tiny_model
from pcsr_lightning.evaluation.compare import read_summary
from pcsr_lightning.io.checkpoint import CheckpointError
from pcsr_lightning.io.images import read_image
from pcsr_lightning.io.sniff import CKPT, SAFETENSORS, file_kind
from pcsr_lightning.io.weights import format_of, load_model, save_model


def same_weights(a, b) -> bool:
    sa, sb = a.model.state_dict(), b.model.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_model_files_are_told_by_content(tmp_path, ckpt):
    st = save_model(tmp_path / "m.safetensors", tiny_model(), TINY_CONFIG)
    assert file_kind(ckpt) == CKPT and file_kind(st) == SAFETENSORS
    # renamed either way, each still loads as what it is
    as_ckpt = shutil.copy(st, tmp_path / "really_safetensors.ckpt")
    as_st = shutil.copy(ckpt, tmp_path / "x.safetensors")
    assert same_weights(load_model(as_ckpt), load_model(st)) and same_weights(load_model(as_st), load_model(ckpt))


@pytest.mark.parametrize("content, kind", [
    (b"\x89PNG\r\n\x1a\n" + bytes(40), "a PNG image"),
    (b"\xff\xd8\xff\xe0" + bytes(40), "a JPEG image"),
    (b"_target_: pcsr_lightning.models.PCSR\n", "text"),
    (b'{"model": 1}', "JSON or other text"),
    (b"version https://git-lfs.github.com/spec/v1\noid sha256:00\n", "Git LFS pointer"),
    (bytes(range(7, 60)), "data of an unknown kind"),
])
def test_a_file_that_is_no_model_says_what_it_is(tmp_path, photos, capsys, content, kind):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(content)
    with pytest.raises(CheckpointError, match=kind):
        load_model(bad)
    for args in (["upscale", "--ckpt", bad, "--input", photos, "--output", tmp_path / "sr"],
                 ["import-official", "--src", bad, "--out", tmp_path / "o.ckpt"],
                 ["convert", bad, "--out", tmp_path / "o.safetensors"]):
        code, err = run_cli(args, capsys)
        assert code == 2 and str(bad) in err and kind in err and "Unsupported" not in err, (args, err)
    assert not (tmp_path / "sr").exists() and not (tmp_path / "o.ckpt").exists()


@pytest.mark.parametrize("out, fmt", [("y.ckpt", "safetensors"), ("y.safetensors", "ckpt"), ("y.pt", "folder"),
                                      ("y", "ckpt"), ("y", "safetensors"), ("y.safetensors", "folder")])
def test_suffix_and_format_must_agree(tmp_path, ckpt, capsys, out, fmt):
    before = snapshot(tmp_path)
    code, err = run_cli(["convert", ckpt, "--out", tmp_path / out, "--format", fmt], capsys)
    assert code == 2 and str(tmp_path / out) in err and f"--format {fmt}" in err and "must agree" in err, err
    assert snapshot(tmp_path) == before
    with pytest.raises(ValueError, match="must agree"):
        format_of(tmp_path / out, fmt)


@pytest.mark.parametrize("out, fmt", [("y.ckpt", None), ("y.pth", "ckpt"), ("y.safetensors", "safetensors"),
                                      ("y", None), ("y", "folder"), ("y.v2", "folder")])
def test_every_format_convert_writes_reads_back(tmp_path, ckpt, capsys, out, fmt):
    code, _ = run_cli(["convert", ckpt, "--out", tmp_path / out, *(["--format", fmt] if fmt else [])], capsys)
    assert code == 0
    assert same_weights(load_model(tmp_path / out), load_model(ckpt))


def test_unknown_suffix_without_folder_format_is_refused(tmp_path, ckpt, capsys):
    code, err = run_cli(["convert", ckpt, "--out", tmp_path / "y.bin"], capsys)
    assert code == 2 and "cannot tell the format from the suffix '.bin'" in err


def test_swap_fit_fill_and_import_outputs_read_back(tmp_path, ckpt, photos, capsys):
    swapped = tmp_path / "swapped.safetensors"
    assert run_cli(["swap", ckpt, ckpt, "--parts", "classifier", "--out", swapped], capsys)[0] == 0
    assert same_weights(load_model(swapped), load_model(ckpt))
    flat = tmp_path / "flat"
    flat.mkdir()
    ramp = np.linspace(0, 255, 64 * 64 * 3).reshape(64, 64, 3).round().astype(np.uint8)
    Image.fromarray(ramp).save(flat / "ramp.png")
    filled = tmp_path / "filled"
    assert run_cli(["fit-fill", ckpt, flat, "--out", filled], capsys)[0] == 0
    assert load_model(filled).model.fill is not None


def test_eval_upscale_and_compare_outputs_read_back(tmp_path, ckpt, photos, capsys):
    out, summary, plot = tmp_path / "per_image.csv", tmp_path / "summary.csv", tmp_path / "curve.png"
    code, _ = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos, "--k", "0", "1", "--out", out, "--summary", summary,
                       "--plot", plot], capsys)
    assert code == 0
    rows = read_summary(summary)
    assert {r["k"] for r in rows if r["setting"] == "k"} == {0.0, 1.0}
    with open(out, newline="") as f:
        records = list(csv.DictReader(f))
    assert {r["image"] for r in records} == {"cat.png", "mean"} and all(float(r["psnr"]) > 0 for r in records)
    assert read_image(plot).shape[0] == 3
    table, cmp_plot = tmp_path / "cmp.md", tmp_path / "cmp.png"
    code, _ = run_cli(["compare", f"a={summary}", f"b={summary}", "--table", table, "--plot", cmp_plot], capsys)
    assert code == 0 and table.read_text().startswith("| model") and read_image(cmp_plot).shape[0] == 3
    sr = tmp_path / "sr"
    assert run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", sr, "--class-map"], capsys)[0] == 0
    assert read_image(sr / "cat.png").shape == (3, 96, 128) and read_image(sr / "cat_classes.png").shape == (3, 96, 128)


def test_bench_json_reads_back(tmp_path, ckpt, capsys):
    from pcsr_lightning.io.checkpoint import save_checkpoint
    from pcsr_lightning.models import CARN, OriginalSR

    original = save_checkpoint(tmp_path / "orig.ckpt", OriginalSR(CARN(nf=8, scale=4), rgb_mean=(0.0, 0.0, 0.0)),
                               {"_target_": "pcsr_lightning.models.OriginalSR",
                                "network": {"_target_": "pcsr_lightning.models.CARN", "nf": 8, "scale": 4},
                                "rgb_mean": [0.0, 0.0, 0.0]})
    report = tmp_path / "bench.json"
    code, err = run_cli(["bench", "--pcsr-ckpt", ckpt, "--original-ckpt", original, "--hr-size", "32x32",
                         "--repeats", "1", "--no-reference", "--json", report], capsys)
    assert code == 0, err
    assert json.loads(report.read_text())["rows"]
