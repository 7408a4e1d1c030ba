"""One rule for every output of every command: never an input, never inside a folder the command reads
(an image folder, a model folder, a training run), checked before anything is written. Each command is
tried with an output inside each kind of folder it reads; every case must exit 2, name the folder and
leave every file as it was."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bad_input_kit import TINY_CONFIG, run_app, run_cli, save_tiny_ckpt, snapshot, tiny_model
from pcsr_lightning.io.weights import load_model, save_model

READS = "a folder this command reads"


def save_image(path: Path, h: int = 24, w: int = 32, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture
def world(tmp_path) -> dict[str, Path]:
    photos, lr, folder = tmp_path / "photos", tmp_path / "lr", tmp_path / "model"
    photos.mkdir()
    lr.mkdir()
    save_image(photos / "cat.png")
    save_image(lr / "catx4.png", 6, 8)
    save_model(folder, tiny_model(), TINY_CONFIG)
    return {"root": tmp_path, "photos": photos, "lr": lr, "folder": folder, "ckpt": save_tiny_ckpt(tmp_path)}


def cases(w: dict[str, Path]) -> list[tuple[list, Path]]:
    """(arguments, the folder read that the output lies in)."""
    photos, lr, folder, ckpt = w["photos"], w["lr"], w["folder"], w["ckpt"]
    return [
        (["upscale", "--ckpt", ckpt, "--input", photos, "--output", photos / "sr"], photos),
        (["upscale", "--ckpt", folder, "--input", photos / "cat.png", "--output", folder], folder),
        (["eval", "--ckpt", ckpt, "--hr-dir", photos, "--out", photos / "per_image.csv"], photos),
        (["eval", "--ckpt", ckpt, "--hr-dir", photos, "--lr-dir", lr, "--summary", lr / "s.csv"], lr),
        (["eval", "--ckpt", folder, "--hr-dir", photos, "--plot", folder / "curve.png"], folder),
        (["table", "--row", f"CARN-PCSR={ckpt}", "--dataset", f"Set={photos}", "--out-dir", photos], photos),
        (["table", "--row", f"CARN-PCSR={ckpt}", "--dataset", f"Set={photos}", "--out-dir", photos / "t"], photos),
        (["convert", folder, "--out", folder / "model.safetensors", "--format", "safetensors", "--overwrite"], folder),
        (["convert", folder, "--out", folder / "copy.safetensors"], folder),
        (["swap", folder, ckpt, "--parts", "classifier", "--out", folder / "swapped.ckpt"], folder),
        (["fit-fill", ckpt, photos, "--out", photos / "filled.ckpt"], photos),
        (["fit-fill", folder, photos / "cat.png", "--out", folder / "filled"], folder),
        (["bench", "--pcsr-ckpt", folder, "--original-ckpt", ckpt, "--hr-size", "16x16", "--json",
          folder / "bench.json"], folder),
        (["export", "--ckpt", folder, "--format", "onnx", "--out", folder / "model.onnx"], folder),
        (["bench-runtime", "--pcsr-ckpt", folder, "--original-ckpt", ckpt, "--hr-image", photos / "cat.png",
          "--hr-size", "16x16", "--json", folder / "runtime.json"], folder),
    ]


def test_no_output_of_any_command_inside_a_folder_it_reads(world, capsys):
    before = snapshot(world["root"])
    for args, folder in cases(world):
        code, err = run_cli(args, capsys)
        assert code == 2 and READS in err and str(folder) in err and "Traceback" not in err, (args, err)
        assert snapshot(world["root"]) == before, args
    assert load_model(world["folder"]).kind == "pcsr"  # the model folder still loads


def test_import_official_never_writes_inside_the_folder_it_reads(world, capsys):
    release = world["folder"] / "release.pth"
    release.write_bytes(b"not read: the output is refused first")
    before = snapshot(world["root"])
    code, err = run_cli(["import-official", "--src", world["folder"], "--out", world["folder"] / "x.ckpt"], capsys)
    assert code == 2 and READS in err
    assert snapshot(world["root"]) == before


def test_outputs_beside_the_folders_read_are_fine(world, capsys):
    out = world["root"] / "sr"
    assert run_cli(["upscale", "--ckpt", world["folder"], "--input", world["photos"], "--output", out], capsys)[0] == 0
    assert (out / "cat.png").is_file()
    # a single image read is a file, not a folder: a result beside it (another name) is allowed
    assert run_cli(["upscale", "--ckpt", world["ckpt"], "--input", world["photos"] / "cat.png", "--output",
                    world["root"]], capsys)[0] == 0


def test_pcsr_eval_output_folder_inside_the_test_images_is_refused(world, capsys, monkeypatch):
    from pcsr_lightning.apps.eval_app import main as app

    before = snapshot(world["root"])
    run = world["photos"] / "eval_run"
    code, err = run_app(app, [f"eval.ckpt={world['ckpt']}", f"eval.hr_dir={world['photos']}",
                              f"hydra.run.dir={run}"], capsys, monkeypatch)
    assert code == 2 and READS in err, err
    assert snapshot(world["root"]) == before and not run.exists()


def test_pcsr_train_run_folder_inside_its_data_is_refused(tmp_path, capsys, monkeypatch):
    from pcsr_lightning.apps.train_app import main as app

    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(2):
        save_image(train / f"t{i}.png", 136, 136, seed=i)
    save_image(val / "v.png", 48, 48)
    base = ["profile=smoke", "logger=none", "callbacks=none", "data=image_folder", f"data.train.path={train}",
            f"data.val.path={val}", "data.crops_per_image=1"]
    before = snapshot(tmp_path)
    for run in (train / "run", val / "run"):
        code, err = run_app(app, [*base, f"hydra.run.dir={run}"], capsys, monkeypatch)
        assert code == 2 and f"the run folder {run} is inside" in err and READS in err, err
        assert not run.exists() and snapshot(tmp_path) == before


def test_nothing_measured_exits_2_and_keeps_earlier_outputs(world, tmp_path, capsys, monkeypatch):
    out, summary, plot = tmp_path / "per_image.csv", tmp_path / "summary.csv", tmp_path / "curve.png"
    args = ["eval", "--ckpt", world["ckpt"], "--hr-dir", world["photos"], "--out", out, "--summary", summary,
            "--plot", plot]
    assert run_cli(args, capsys)[0] == 0
    before = snapshot(tmp_path)
    code, err = run_cli([*args, "--max-pixels", "10"], capsys)  # every image now skipped
    assert code == 2 and "no image in" in err and "could be measured" in err and f"{summary}" in err, err
    assert snapshot(tmp_path) == before

    from pcsr_lightning.apps.eval_app import main as app

    run = tmp_path / "job"
    code, err = run_app(app, [f"eval.ckpt={world['ckpt']}", f"eval.hr_dir={world['photos']}", "eval.max_pixels=10",
                              f"hydra.run.dir={run}"], capsys, monkeypatch)
    assert code == 2 and "could be measured" in err and not (run / "summary.csv").exists()


def test_pcsr_demo_run_folder_inside_its_training_photos_is_refused(world, capsys):
    photos = world["photos"]
    before = snapshot(world["root"])
    code, err = run_cli(["demo", "--profile", "smoke", "--out", photos / "demo", "data=image_folder",
                         f"data.train.path={photos}", f"data.val.path={photos}"], capsys)
    assert code == 2 and f"the run folder {photos / 'demo'} is inside {photos}" in err and READS in err, err
    assert snapshot(world["root"]) == before and not (photos / "demo").exists()
