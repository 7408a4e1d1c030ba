"""The flat-tile gate's studies: the leave-one-out rule, the crops' turns and textures, and gate_4k,
gate_fill, gate_timing and gate_learned end to end on tiny folders (tiny models, smoke training)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from test_studies import _study

from factories import save_tiny
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.io.images import read_image, write_png
from pcsr_lightning.io.runs import JobResult
from pcsr_lightning.studies.actions import Context, crops, mirror_tiled
from pcsr_lightning.studies.select import NothingChosen, choose, leave_one_out


def per_image(losses: dict[str, dict[float, float]]) -> list[dict]:
    """Per-image eval rows: each image's plain k = 0 row at 30 dB and one row per threshold, and a mean row."""
    rows = []
    for image, by_threshold in losses.items():
        rows.append({"image": image, "skip_flat": None, "psnr": 30.0})
        rows += [{"image": image, "skip_flat": t, "psnr": 30.0 - loss} for t, loss in by_threshold.items()]
    means = [{"image": "mean", "skip_flat": t, "psnr": 99.0} for t in (None, 0.3)]  # ignored by the rule
    return rows + means


def test_leave_one_out_chooses_each_photos_threshold_on_the_other_photos_only():
    rows = per_image({"a.png": {0.1: 0.01, 0.2: 0.03, 0.3: 0.20},
                      "b.png": {0.1: 0.02, 0.2: 0.05, 0.3: 0.06},
                      "c.png": {0.1: 0.03, 0.2: 0.09, 0.3: 0.30}})
    # mean losses without a: 0.025 / 0.07 / 0.18 dB; without b: 0.02 / 0.06 / 0.25;
    # without c: 0.015 / 0.04 / 0.13
    chosen = leave_one_out(rows, "skip_flat", budget=0.05)
    assert chosen == [{"image": "a.png", "skip_flat": 0.1}, {"image": "b.png", "skip_flat": 0.1},
                      {"image": "c.png", "skip_flat": 0.2}]
    # all three together would choose 0.1 (0.02 / 0.057 / 0.187): leaving c out is what lets 0.2 through
    results = [JobResult(f"sweep/family={f}", {"family": f}, rows) for f in ("carn", "fsrcnn")]
    picks = choose({"from": "sweep", "choose": "skip_flat", "rule": "leave_one_out", "by": ["family"]}, results)
    assert len(picks) == 6 and picks[2] == {"family": "carn", "image": "c.png", "skip_flat": 0.2}


def test_leave_one_out_refuses_one_photo_an_impossible_budget_and_mixed_settings():
    with pytest.raises(NothingChosen, match="two or more images"):
        leave_one_out(per_image({"a.png": {0.1: 0.0}}), "skip_flat")
    with pytest.raises(NothingChosen, match="without image a.png: no skip_flat keeps psnr within 0.05"):
        leave_one_out(per_image({"a.png": {0.1: 0.01}, "b.png": {0.1: 0.30}}), "skip_flat")
    mixed = per_image({"a.png": {0.1: 0.0}, "b.png": {0.1: 0.0}, "c.png": {0.1: 0.0}})
    with pytest.raises(NothingChosen, match="one row per image"):
        leave_one_out(mixed + [{"image": "a.png", "skip_flat": 0.1, "psnr": 29.0}], "skip_flat")


def test_crops_turn_portrait_photos_on_request_and_textures_are_mirror_tiled(tmp_path):
    photos = tmp_path / "photos"
    torch.manual_seed(0)
    images = {"wide": torch.rand(3, 40, 64), "tall": torch.rand(3, 64, 40), "small": torch.rand(3, 20, 20)}
    for name, img in images.items():
        write_png(img, photos / f"{name}.png")
    ctx = Context(photos, tmp_path / "job", tmp_path)
    crops(ctx, "32x60", portrait=True)
    assert sorted(p.name for p in (tmp_path / "job" / "photos").iterdir()) == ["tall.png", "wide.png"]
    turned = read_image(photos / "tall.png").rot90(1, (-2, -1))  # counter-clockwise: 40 x 64, then the centre crop
    assert torch.equal(read_image(tmp_path / "job" / "photos" / "tall.png"), turned[:, 4:36, 2:62])
    plain = Context(photos, tmp_path / "plain", tmp_path)
    crops(plain, "32x60")
    assert [p.name for p in (tmp_path / "plain" / "photos").iterdir()] == ["wide.png"]
    with pytest.raises(ValueError, match="holds a 64x64 crop .portrait: true"):
        crops(Context(photos, tmp_path / "none", tmp_path), "64x64")
    out = crops(Context(None, tmp_path / "tex", tmp_path), "600x1100", textures=["grass"])
    grass = read_image(Path(out.values["hr_dir"]) / "texture_grass.png")
    tile = sample_photo("grass")
    h, w = tile.shape[-2:]
    assert grass.shape[-2:] == (600, 1100) and torch.equal(grass, mirror_tiled(tile, (600, 1100)))
    torch.testing.assert_close(grass[:, :h, w : w + 4], tile[:, :, -4:].flip(-1), atol=1 / 255, rtol=0)  # mirrored


def _photos(root: Path, role: str, names: list[str], size=(96, 128)) -> None:
    (root / role).mkdir()
    for name in names:
        img = sample_photo(name)[:, : size[0], : size[1]]
        write_png(img if name != "camera" else img.transpose(-1, -2), root / role / f"{name}.png")


def _rows(path: Path) -> list[dict]:
    return json.loads(path.read_text())["rows"]


def tiny(root: Path) -> tuple[str, ...]:
    """The tiny CARN models by absolute path (a path names no job folder)."""
    return f"models.carn.pcsr={root / 'cp.ckpt'}", f"models.carn.original={root / 'co.ckpt'}", "families=[carn]"


@pytest.fixture
def tiny_models(tmp_path):
    for name, kind in (("cp", "pcsr"), ("co", "original")):
        save_tiny(tmp_path / f"{name}.ckpt", kind=kind, backbone="carn")
    return tmp_path


def test_gate_4k_reports_each_photo_at_the_threshold_the_others_chose(tiny_models):
    root = tiny_models
    _photos(root, "val", ["chelsea", "astronaut", "camera"])  # camera is stored turned (tall)
    run = _study(root, "study=gate_4k", "photos.val=val", *tiny(root), "hr_size=64x96", "thresholds.carn=[0.5,1]",
                 "budget=0.5", "repeats=1")
    assert run.returncode == 0, run.stderr[-3000:]
    out = root / "outputs" / "studies" / "gate_4k"
    assert sorted(p.name for p in (out / "photos" / "photos").iterdir()) == [
        "astronaut.png", "camera.png", "chelsea.png"]  # camera turned to fit
    sweep = [r for r in _rows(out / "sweep" / "family=carn" / "result.json") if r["model"] == "pcsr"]
    picks = _rows(out / "pick" / "result.json")
    assert [p["image"] for p in picks] == ["astronaut.png", "camera.png", "chelsea.png"]
    assert picks == [{"family": "carn", **c} for c in leave_one_out(sweep, "skip_flat", budget=0.5)]
    for pick in picks:
        job = f"family=carn,image={pick['image']},skip_flat={pick['skip_flat']:g}"
        with open(out / "held_out" / job / "per_image.csv", newline="") as f:
            assert {r["image"] for r in csv.DictReader(f)} == {pick["image"], "mean"}  # the held-out photo alone
        own = next(r for r in sweep if r["image"] == pick["image"] and r["skip_flat"] == pick["skip_flat"])
        gated = next(r for r in _rows(out / "held_out" / job / "result.json") if r["skip_flat"] is not None)
        assert gated["psnr"] == pytest.approx(own["psnr"], abs=1e-6)  # the sweep's row, evaluated alone
        bench = _rows(out / "bench" / job / "result.json")
        assert {r["image"] for r in bench} == {pick["image"]} and bench[-1]["variant"] == "summary"
    assert "each photo's threshold, chosen on the other photos" in (out / "report" / "report.md").read_text()


@pytest.mark.slow
def test_gate_fill_fits_on_train_chooses_on_val_and_reports_on_report(tiny_models):
    root = tiny_models
    _photos(root, "train", ["rocket", "immunohistochemistry"])
    _photos(root, "val", ["chelsea", "coffee"])
    _photos(root, "report", ["astronaut"])
    run = _study(root, "study=gate_fill", "photos.train=train", "photos.val=val", "photos.report=report", *tiny(root),
                 "hr_size=64x96", "thresholds.carn=[0.5,1,2]", "report_ks=[0]", "textures=[grass]", "samples=[camera]")
    assert run.returncode == 0, run.stderr[-3000:]
    out = root / "outputs" / "studies" / "gate_fill"
    fitted = _rows(out / "fill" / "family=carn" / "result.json")[0]
    assert fitted["photos"] == 2 and fitted["flat_lr_pixels"] > 0  # the two train photos
    (pick,) = _rows(out / "pick" / "result.json")
    val = _rows(out / "val" / "family=carn" / "result.json")
    plain = next(r for r in val if r["skip_flat"] is None and r["model"] == "pcsr")
    assert pick["skip_flat"] == max(r["skip_flat"] for r in val if r["skip_flat"] is not None
                                    and plain["psnr"] - r["psnr"] <= 0.05 + 1e-9)
    report = out / "report_2k" / f"family=carn,skip_flat={pick['skip_flat']:g}"
    with open(report / "per_image.csv", newline="") as f:
        assert {r["image"] for r in csv.DictReader(f)} == {"astronaut.png", "mean"}
    assert "the fill fitted on the train photos" in (out / "report" / "report.md").read_text()


def test_a_fill_study_reporting_on_its_train_folder_exits_2_and_leaves_nothing(tiny_models):
    root = tiny_models
    _photos(root, "train", ["rocket"])
    _photos(root, "val", ["chelsea"])
    run = _study(root, "study=gate_fill", "photos.train=train", "photos.val=val", "photos.report=train", *tiny(root))
    assert run.returncode == 2 and "is also the train folder" in run.stderr
    assert not (root / "outputs").exists()


@pytest.mark.slow
def test_gate_timing_benches_each_report_photo_at_the_chosen_threshold(tiny_models):
    root = tiny_models
    _photos(root, "val", ["chelsea", "coffee"])
    _photos(root, "report", ["astronaut"])
    write_png(sample_photo("rocket")[:, :40, :40], root / "report" / "small.png")  # holds no crop: not timed
    run = _study(root, "study=gate_timing", "photos.val=val", "photos.report=report", *tiny(root), "hr_size=64x96",
                 "thresholds.carn=[0.5,1]", "report_ks=[0]", "textures=[grass]", "samples=[camera]",
                 "bench_sizes=[64x96]", "repeats=1")
    assert run.returncode == 0, run.stderr[-3000:]
    out = root / "outputs" / "studies" / "gate_timing"
    (pick,) = _rows(out / "pick" / "result.json")
    bench = _rows(out / "bench_report" / f"family=carn,size=64x96,skip_flat={pick['skip_flat']:g}" / "result.json")
    assert {r["image"] for r in bench} == {"astronaut.png"}
    variants = [r["variant"] for r in bench if r["image"] == "astronaut.png"]
    assert len(variants) >= 6 and variants[-1] == "summary"  # original, k = 0, 2 thresholds x 2 halos, summary
    assert "wall clock per photo" in (out / "timing_report" / "report.md").read_text()


GATE_TRAIN = ["experiment=gate_fsrcnn", "init.checkpoint=${study.point.pcsr}", "profile=smoke", "model.gate_steps=2",
              "backbone.trunk.d=8", "backbone.trunk.s=4", "backbone.trunk.m=1", "backbone.heavy_hidden=[24,24]",
              "backbone.light_hidden=[12]", "backbone.classifier_hidden=[8]", "data.lr_patch=32",
              "model.stages.gate.module.buffer=4", "model.stages.gate.module.fresh_every=1"]  # a tiny FSRCNN-PCSR


@pytest.mark.slow
def test_gate_learned_trains_the_gate_on_train_and_chooses_each_scorers_threshold_on_val(tmp_path):
    save_tiny(tmp_path / "fp.ckpt", kind="pcsr", backbone="fsrcnn")
    _photos(tmp_path, "train", ["rocket", "immunohistochemistry"], (128, 160))
    _photos(tmp_path, "val", ["chelsea", "coffee"])
    _photos(tmp_path, "report", ["astronaut"])
    run = _study(tmp_path, "study=gate_learned", "photos.train=train", "photos.val=val", "photos.report=report",
                 "families=[fsrcnn]", f"models.fsrcnn={tmp_path / 'fp.ckpt'}", "hr_size=64x96",
                 "laplacian.fsrcnn=[0.5,1]", "budget=1",
                 "gate_train=[" + ",".join(f"'{o}'" for o in GATE_TRAIN) + "]")
    assert run.returncode == 0, run.stderr[-3000:]
    out = tmp_path / "outputs" / "studies" / "gate_learned"
    grids = json.loads((out / "grids" / "family=fsrcnn" / "result.json").read_text())["values"]
    assert grids["laplacian"] == [0.5, 1.0] and len(grids["learned"]) == 2
    assert grids["learned"] == sorted(grids["learned"])  # matched shares rise with the Laplacian's
    picks = {p["scorer"]: p["skip_flat"] for p in _rows(out / "pick" / "result.json")}
    assert set(picks) == {"laplacian", "learned"} and picks["laplacian"] in grids["laplacian"]
    for scorer, threshold in picks.items():
        job = f"family=fsrcnn,scorer={scorer},skip_flat={threshold:g}"
        assert (out / "report_2k" / job / "result.json").is_file()
