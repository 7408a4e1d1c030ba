"""Bad input, second suite: nothing silently wrong, nothing lost. Generated files for each rule of the
README's "Bad input" section that ``test_bad_input.py`` does not build: NaN/inf weights and pixels,
non-finite results and losses, two writers in one folder, outputs over inputs, refused training configs,
failed multirun jobs, argument errors, Ctrl-C, empty folders and entries that are no file. Each case
checks the exit code, the message and that nothing was written or lost."""

from __future__ import annotations

import csv
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bad_input_kit import TINY_CONFIG, run_app, run_cli, snapshot, tiny_model
from pcsr_lightning.inference.srmodel import SRModel
from pcsr_lightning.io.checkpoint import FORMAT, CheckpointError, load_checkpoint, save_checkpoint
from pcsr_lightning.io.files import FileExistsElsewhere, OutputError, atomic_write, write_text
from pcsr_lightning.io.images import read_image, write_png
from pcsr_lightning.models import FSRCNN

SRC = Path(__file__).resolve().parents[2] / "src"


def save_image(path: Path, h: int, w: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
    return path


def poisoned(tmp_path: Path, value: float, name: str = "bad.ckpt") -> Path:
    model = tiny_model()
    with torch.no_grad():
        model.upsamplers[1].layers[0].weight[0, :3] = value
    return save_checkpoint(tmp_path / name, model, TINY_CONFIG)


# --- finite or refused: weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused_by_every_command(tmp_path, photos, capsys, value):
    bad = poisoned(tmp_path, value)
    with pytest.raises(CheckpointError, match=r"bad.ckpt: tensor 'upsamplers.1.layers.0.weight' has 3 non-finite"):
        load_checkpoint(bad)
    before = snapshot(photos)
    for args in (["upscale", "--ckpt", bad, "--input", photos, "--output", tmp_path / "sr"],
                 ["eval", "--ckpt", bad, "--hr-dir", photos, "--out", tmp_path / "e.csv"],
                 ["flops", "--ckpt", bad, "--lr-size", 8, 8],
                 ["swap", bad, bad, "--parts", "classifier", "--out", tmp_path / "s.ckpt"]):
        code, err = run_cli(args, capsys)
        assert code == 2 and "upsamplers.1.layers.0.weight" in err and "NaN or inf" in err and str(bad) in err
    assert snapshot(photos) == before
    assert not (tmp_path / "sr").exists() and not (tmp_path / "e.csv").exists() and not (tmp_path / "s.ckpt").exists()


def test_non_finite_release_weights_are_not_imported(tmp_path, capsys):
    sd = FSRCNN(scale=4, init="pytorch").state_dict()
    sd["tail_conv.bias"] = torch.tensor([0.0, float("nan"), 0.0])
    src = tmp_path / "fsrcnn-x4.pth"
    torch.save({"model": {"name": "fsrcnn", "args": {}, "sd": sd}, "iter": 1}, src)
    code, err = run_cli(["import-official", "--src", src, "--out", tmp_path / "out.ckpt"], capsys)
    assert code == 2 and "tensor 'network.tail_conv.bias' has 1 non-finite value(s)" in err and str(src) in err
    assert not (tmp_path / "out.ckpt").exists()


def test_state_dict_with_a_non_string_key_and_negative_widths(tmp_path, photos, capsys):
    state = {**tiny_model().state_dict(), 0: torch.zeros(1)}
    odd = tmp_path / "odd.ckpt"
    torch.save({"format": FORMAT, "format_version": 1, "kind": "pcsr", "model": TINY_CONFIG, "state_dict": state}, odd)
    code, err = run_cli(["eval", "--ckpt", odd, "--hr-dir", photos], capsys)
    assert code == 2 and "odd.ckpt: its state_dict has a non-string key 0 (int)" in err
    negative = {**TINY_CONFIG, "backbone": {**TINY_CONFIG["backbone"], "nf": -8}}
    neg = save_checkpoint(tmp_path / "neg.ckpt", tiny_model(), negative)
    code, err = run_cli(["upscale", "--ckpt", neg, "--input", photos, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and "CARN nf must be an integer >= 1, got -8" in err
    code, err = run_cli(["flops", "--ckpt", save_checkpoint(tmp_path / "w.ckpt", tiny_model(),
                                                            {**TINY_CONFIG, "upsampler_hidden": [[16], [0]]}),
                         "--lr-size", 8, 8], capsys)
    assert code == 2 and "MLP hidden width must be an integer >= 1, got 0" in err


def test_a_resumed_stages_weights_are_read_weights_only_and_checked(tmp_path):
    from pcsr_lightning.training.pipeline import load_stage_weights

    with pytest.raises(CheckpointError, match="tensor 'upsamplers.1.layers.0.weight' has 3 non-finite"):
        load_stage_weights(tiny_model(), poisoned(tmp_path, float("nan")))
    not_ours = tmp_path / "other.ckpt"
    torch.save({"weights": [1, 2]}, not_ours)
    with pytest.raises(CheckpointError, match="its state_dict is not a dict of tensors"):
        load_stage_weights(tiny_model(), not_ours)


# --- finite or refused: pixels and results ----------------------------------------------------------------


def test_float_images_nan_refused_out_of_range_clipped(tmp_path, photos, ckpt, capsys):
    values = np.linspace(-0.5, 1.5, 24 * 32, dtype=np.float32).reshape(24, 32)
    Image.fromarray(values, mode="F").save(photos / "wide.tif")
    img = read_image(photos / "wide.tif")
    assert img.min() == 0 and img.max() == 1 and torch.isfinite(img).all()
    values[3, :5] = np.nan
    values[4, 0] = np.inf
    Image.fromarray(values, mode="F").save(photos / "holes.tif")
    out = tmp_path / "sr"
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out], capsys)
    assert code == 1 and "holes.tif: 6 of 768 pixels are not finite (NaN or inf)" in err
    assert sorted(p.name for p in out.iterdir()) == ["cat.png", "wide.png"]
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", photos], capsys)
    assert code == 1 and "holes.tif: 6 of 768 pixels are not finite" in err


def test_non_finite_results_are_not_written(tmp_path, photos, capsys):
    model = tiny_model()
    with torch.no_grad():  # finite weights whose products overflow: inf, then NaN, in every result
        for layer in model.upsamplers[0].linears + model.upsamplers[1].linears:
            layer.weight.fill_(3e38)
    huge = save_checkpoint(tmp_path / "huge.ckpt", model, TINY_CONFIG)
    out = tmp_path / "sr"
    code, err = run_cli(["upscale", "--ckpt", huge, "--input", photos, "--output", out, "--class-map"], capsys)
    assert code == 1 and f"{photos / 'cat.png'}: the SR result has" in err and "nothing written for it" in err
    assert not out.exists() or not any(out.iterdir())
    code, err = run_cli(["eval", "--ckpt", huge, "--hr-dir", photos, "--out", tmp_path / "e.csv"], capsys)
    # its only image not measured: nothing measured at all, so a failure as a whole that writes nothing
    assert code == 2 and "cat.png: the SR result (k=0) has" in err and "could be measured" in err
    assert not (tmp_path / "e.csv").exists()
    img = torch.full((3, 2, 2), 0.5)
    img[0, 0, :] = float("nan")
    img[1, 1, 1] = float("inf")
    with pytest.raises(OutputError, match="refusing to write .*x.png: 3 of 12 values are not finite"):
        write_png(img, tmp_path / "x.png")
    assert not (tmp_path / "x.png").exists()


# --- no clobbering ------------------------------------------------------------------------------------------

# ``pcsr upscale`` in its own process, held at two points by files in ``sync``: after its last check has
# passed (until both runs got there: both saw the output folder empty), and, for a run named in
# ``PCSR_TEST_WAIT``, before its first write until the file ``go`` appears.
TWO_WRITERS = textwrap.dedent('''
    import os, sys, time
    from pathlib import Path
    import pcsr_lightning.apps.commands.upscale as upscale
    from pcsr_lightning.apps.cli import main

    sync, me = Path(sys.argv[1]), sys.argv[2]

    def wait_for(*names):
        while not all((sync / n).exists() for n in names):
            time.sleep(0.02)

    real_check, real_write = upscale.check_existing, upscale.write_result

    def check_existing(*args, **kwargs):
        real_check(*args, **kwargs)
        (sync / f"checked-{me}").touch()
        wait_for("checked-A", "checked-B")

    def write_result(*args, **kwargs):
        if os.environ.get("PCSR_TEST_WAIT") == me:
            wait_for("go")
        return real_write(*args, **kwargs)

    upscale.check_existing, upscale.write_result = check_existing, write_result
    sys.exit(main(sys.argv[3:]))
''')


def test_two_processes_writing_one_folder_never_replace_a_result(ckpt, photos, tmp_path):
    save_image(photos / "dog.png", 20, 28, seed=1)
    driver, sync, out = tmp_path / "two_writers.py", tmp_path / "sync", tmp_path / "sr"
    driver.write_text(TWO_WRITERS)
    sync.mkdir()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
           "PCSR_TEST_WAIT": "B"}
    args = ["upscale", "--ckpt", ckpt, "--input", photos, "--output", out]
    first, second = (subprocess.Popen([sys.executable, str(driver), str(sync), name, *map(str, args)], env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for name in "AB")
    _, err_a = first.communicate(timeout=120)
    assert first.returncode == 0, err_a
    before = snapshot(out)
    inodes = {p.name: p.stat().st_ino for p in out.iterdir()}
    assert sorted(before) == ["cat.png", "dog.png"]
    (sync / "go").touch()
    _, err_b = second.communicate(timeout=120)
    assert second.returncode == 2
    assert f"{out / 'cat.png'} appeared while this run was writing it" in err_b and "kept, not replaced" in err_b
    assert "0 of 2 image(s) written" in err_b and "--skip-existing" in err_b and "Traceback" not in err_b
    assert snapshot(out) == before and {p.name: p.stat().st_ino for p in out.iterdir()} == inodes
    assert not list(out.glob(".*"))  # no temporary file left


def test_no_clobber_write_keeps_a_file_that_appears_meanwhile(tmp_path, monkeypatch):
    target = tmp_path / "r.txt"

    def racing(tmp):
        tmp.write_text("mine")
        target.write_text("theirs")  # another writer finishes first

    with pytest.raises(FileExistsElsewhere, match="r.txt appeared while this run was writing it"):
        atomic_write(target, racing, overwrite=False)
    assert target.read_text() == "theirs" and sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]
    assert write_text("new", tmp_path / "n.txt", overwrite=False).read_text() == "new"
    assert write_text("again", tmp_path / "n.txt").read_text() == "again"  # overwrite=True replaces

    def no_links(src, dst):  # a file system without hard links: checked rename instead
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    assert write_text("x", tmp_path / "fresh.txt", overwrite=False).read_text() == "x"
    with pytest.raises(FileExistsElsewhere):
        write_text("y", tmp_path / "fresh.txt", overwrite=False)
    assert (tmp_path / "fresh.txt").read_text() == "x"


def write_summary(path: Path, header: str = "model,setting,k,images,psnr,heavy_share,gflops_paper",
                  rows: tuple[str, ...] = ("pcsr,k,0,1,30.0,0.5,1.0", "pcsr,k,1,1,29.0,0.2,0.5")) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


def test_no_command_writes_over_its_inputs(ckpt, photos, tmp_path, capsys):
    a, b = write_summary(tmp_path / "a.csv"), write_summary(tmp_path / "b.csv")
    lr = tmp_path / "lr"
    lr.mkdir()
    save_image(lr / "catx4.png", 6, 8)
    save_image(photos / "curve_Set.png", 24, 32, seed=2)  # a dataset image with a name the table writes
    before = {**snapshot(tmp_path)}
    cases = [
        (["compare", f"a={a}", f"b={b}", "--table", a], "output"),
        (["compare", f"a={a}", f"b={b}", "--plot", b], "output"),
        (["table", "--row", f"CARN-PCSR={ckpt}", "--dataset", f"Set={photos}", "--out-dir", photos],
         "a folder this command reads"),
        (["bench", "--pcsr-ckpt", ckpt, "--original-ckpt", ckpt, "--hr-size", "16x16", "--json", ckpt], "tiny.ckpt"),
        (["eval", "--ckpt", ckpt, "--hr-dir", photos, "--lr-dir", lr, "--plot", lr / "catx4.png"], "catx4.png"),
        (["swap", ckpt, ckpt, "--parts", "classifier", "--out", ckpt], "tiny.ckpt"),
    ]
    for args, name in cases:
        code, err = run_cli(args, capsys)
        assert code == 2 and name in err, (args, err)
        assert "would overwrite the input" in err or "a folder this command reads" in err, (args, err)
    assert snapshot(tmp_path) == before


# --- pcsr-train: checked before anything is written ---------------------------------------------------------


@pytest.fixture
def train_images(tmp_path) -> tuple[Path, Path]:
    train, val = tmp_path / "train", tmp_path / "val"
    train.mkdir()
    val.mkdir()
    for i in range(2):
        save_image(train / f"t{i}.png", 136, 136, seed=i)
    save_image(val / "v.png", 48, 48, seed=9)
    return train, val


def train_args(train: Path, val: Path, run: Path, *extra) -> list[str]:
    return ["profile=smoke", "logger=none", "callbacks=none", "data=image_folder", f"data.train.path={train}",
            f"data.val.path={val}", "data.crops_per_image=1", f"hydra.run.dir={run}", *extra]


@pytest.mark.parametrize("overrides, message", [
    (["optimizer.lr=nan"], "optimizer.lr must be a finite number > 0, got nan"),
    (["optimizer.lr=0"], "optimizer.lr must be a finite number > 0, got 0"),
    (["scheduler.eta_min=-1"], "scheduler.eta_min must be a finite number >= 0"),
    (["model.num_classes=0"], "model.num_classes must be an integer >= 1, got 0"),
    (["backbone.trunk.d=-4"], "FSRCNN d must be an integer >= 1, got -4"),
    (["model.net.classifier_hidden=[0]"], "MLP hidden width must be an integer >= 1, got 0"),
    (["trainer.devices=0"], "trainer: `Trainer(devices=0)` value is not a valid input"),
    (["data.batch_size=3", "trainer.devices=2", "+trainer.strategy=ddp"],
     "batch_size=3 does not split over 2 processes"),
    (["data.lr_patch=40"], "no usable image of at least 160x160 in"),
    (["data.queries=0"], "queries must be in [1, 16384]"),
    (["data.hr_scales=[1,1.5]"], "hr_scales must be a non-empty list of factors in (0, 1] or null, got [1, 1.5]"),
    (["data.train.path=MISSING"], "image folder not found"),
])
def test_refused_training_configs_leave_nothing_behind(train_images, tmp_path, capsys, monkeypatch, overrides,
                                                       message):
    from pcsr_lightning.apps.train_app import main as app

    train, val = train_images
    overrides = [o.replace("MISSING", str(tmp_path / "nope")) for o in overrides]
    code, err = run_app(app, train_args(train, val, tmp_path / "new" / "run", *overrides), capsys, monkeypatch)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert sum(line.startswith("error:") for line in err.splitlines()) == 1
    assert not (tmp_path / "new").exists()


def test_refused_for_lack_of_a_gpu(train_images, tmp_path, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA device")
    from pcsr_lightning.apps.train_app import main as app

    code, err = run_app(app, train_args(*train_images, tmp_path / "run", "trainer=gpu"), capsys, monkeypatch)
    assert code == 2 and "trainer.accelerator=gpu but this machine has no CUDA device" in err
    assert not (tmp_path / "run").exists()


def test_a_fixed_config_runs_and_a_nan_loss_stops_training(train_images, tmp_path, capsys, monkeypatch):
    from pcsr_lightning.apps.train_app import main as app

    train, val = train_images
    small = save_image(train / "small.png", 64, 64)
    run = tmp_path / "run"
    code, err = run_app(app, train_args(train, val, run, "optimizer.lr=nan"), capsys, monkeypatch)
    assert code == 2 and not run.exists()
    with pytest.warns(UserWarning, match=f"skipping {small}: 64x64 is smaller than a 128x128 crop"):
        code, err = run_app(app, train_args(train, val, run, "optimizer.lr=1e-3"), capsys, monkeypatch)
    assert code == 0 and (run / "final.ckpt").is_file()

    diverging = tmp_path / "diverging"
    code, err = run_app(app, train_args(train, val, diverging, "optimizer.lr=1e30"), capsys, monkeypatch)
    assert code == 1 and re.search(r"error: stage stage0: the training loss is (nan|inf) at step 2", err)
    assert "Traceback" not in err
    lightning = diverging / "stages" / "stage0" / "lightning"
    assert f"last checkpoint {lightning / 'last.ckpt'} is kept" in err
    assert sorted(p.name for p in lightning.iterdir()) == ["last.ckpt"]  # no checkpoint of the diverged step
    weights = torch.load(lightning / "last.ckpt", weights_only=False)["state_dict"]
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())
    assert not (diverging / "final.ckpt").exists()


def test_a_failed_multirun_job_does_not_stop_the_others(ckpt, photos, tmp_path, capsys, monkeypatch):
    from pcsr_lightning.apps.eval_app import main as app

    sweep = tmp_path / "sweep"
    code, err = run_app(app, ["-m", f"eval.ckpt={ckpt}", f"eval.hr_dir={photos}", "eval.k=0,nan,1",
                              f"hydra.sweep.dir={sweep}"], capsys, monkeypatch)
    assert code == 2 and "error: 1 of 3 job(s) failed:" in err and "Traceback" not in err
    assert "#1 (" in err and "eval.k=nan): the cost knob k must be a finite number, got nan" in err
    assert (sweep / "eval.k=0" / "summary.csv").is_file() and (sweep / "eval.k=1" / "summary.csv").is_file()
    assert not (sweep / "eval.k=nan" / "summary.csv").exists()
    with open(sweep / "summary.csv", newline="") as f:  # the sweep's summary covers the finished jobs only
        assert {r["job"] for r in csv.DictReader(f)} == {"eval.k=0", "eval.k=1"}
    code, err = run_app(app, [f"eval.ckpt={ckpt}", f"eval.hr_dir={photos}", "eval.k=nan",
                              f"hydra.run.dir={tmp_path / 'new' / 'job'}"], capsys, monkeypatch)
    assert code == 2 and "k must be a finite number" in err and not (tmp_path / "new").exists()


# --- one message, exit 2, no traceback ------------------------------------------------------------------------


def test_argument_and_file_errors_are_one_line(ckpt, photos, tmp_path, capsys):
    no_setting = write_summary(tmp_path / "no_setting.csv", header="model,k,images,psnr,heavy_share,gflops_paper",
                               rows=("pcsr,0,1,30.0,0.5,1.0",))
    words = write_summary(tmp_path / "words.csv", rows=("pcsr,k,0,1,thirty,0.5,1.0",))
    good = write_summary(tmp_path / "good.csv")
    binary = tmp_path / "binary.csv"
    binary.write_bytes(b"\xff\xfe\x00model")
    (tmp_path / "empty.csv").touch()
    cases = [
        (["bench", "--pcsr-ckpt", ckpt, "--original-ckpt", ckpt, "--hr-size", "16x16", "--scale", "0"],
         "argument --scale: must be an integer >= 2, got 0"),
        (["demo", "--experiment", "nope"], "--experiment 'nope' is not one of the experiment configs: carn_original"),
        (["demo", "--profile", "fast"], "--profile 'fast' is not one of the profile configs"),
        (["compare", f"a={no_setting}", f"b={good}"],
         "no_setting.csv is not a `pcsr eval --summary` CSV: no column setting"),
        (["compare", f"a={words}", f"b={good}"], "words.csv, line 2: column psnr holds 'thirty', not a number"),
        (["compare", f"a={binary}", f"b={good}"], "binary.csv is not a readable CSV file"),
        (["compare", f"a={good}", f"a={good}"], "label 'a' is given twice"),
        (["table", "--row", f"CARN-PCSR={ckpt}", "--row", f"CARN-PCSR={ckpt}"], "--row CARN-PCSR is given twice"),
        (["table", "--row", f"CARN-PCSR={ckpt}", "--dataset", f"X={tmp_path / 'none'}", "--out-dir", tmp_path / "t"],
         "image folder not found"),
        (["upscale", "--ckpt", photos, "--input", photos, "--output", tmp_path / "sr"],
         f"{photos}: no config.json (a model folder holds"),
        (["import-official", "--src", tmp_path / "none.pth", "--out", tmp_path / "o.ckpt"],
         "release checkpoint not found"),
        (["compare", f"a={tmp_path / 'empty.csv'}", f"b={good}"], "empty.csv is empty"),
        (["table", "--row", f"CARN-PCSR={ckpt}", "--psnr-tolerance", "nan"],
         "--psnr-tolerance must be a finite number"),
        (["table", "--runs", tmp_path / "none"], "none: folder not found"),
    ]
    for args, message in cases:
        code, err = run_cli(args, capsys)
        assert code == 2 and message in err and "Traceback" not in err, (args, err)
    assert not (tmp_path / "sr").exists() and not (tmp_path / "t").exists()


def test_ctrl_c_says_what_was_done_and_skip_existing_continues(ckpt, photos, tmp_path, capsys, monkeypatch):

    for i in range(5):
        save_image(photos / f"p{i}.png", 12, 16, seed=i)
    out = tmp_path / "sr"
    real, calls = SRModel.super_resolve, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(SRModel, "super_resolve", interrupted)
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out], capsys)
    assert code == 130 and f"interrupted: 3 of 6 image(s) written to {out}" in err and "--skip-existing" in err
    done = snapshot(out)
    assert len(done) == 3 and not list(out.glob(".*"))
    monkeypatch.undo()
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out], capsys)
    assert code == 2 and "3 output file(s) already exist" in err and "--skip-existing" in err
    assert run_cli(["upscale", "--ckpt", ckpt, "--input", photos, "--output", out, "--skip-existing"], capsys)[0] == 0
    after = snapshot(out)
    assert len(after) == 6 and all(after[name] == done[name] for name in done)  # the first three untouched


def test_empty_folders_and_entries_that_are_no_file(ckpt, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", empty, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and f"no images to upscale in {empty}" in err
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "gone.png").symlink_to(tmp_path / "deleted.png")
    os.mkfifo(odd / "pipe.jpg")
    (odd / "album.png").mkdir()
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", odd, "--output", tmp_path / "sr"], capsys)
    assert code == 2 and f"no images to upscale in {odd}" in err
    assert f"warning: skipping {odd / 'gone.png'}: a dangling symbolic link" in err
    assert f"warning: skipping {odd / 'pipe.jpg'}: a named pipe (FIFO), not a file" in err
    assert f"warning: skipping {odd / 'album.png'}: a folder, not a file" in err
    save_image(odd / "real.png", 12, 16)
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", odd, "--output", tmp_path / "sr"], capsys)
    assert code == 0 and err.count("warning: skipping") == 3 and (tmp_path / "sr" / "real.png").is_file()
    code, err = run_cli(["eval", "--ckpt", ckpt, "--hr-dir", odd], capsys)
    assert code == 0 and err.count("warning: skipping") == 3


def test_unreadable_entries_are_named(ckpt, tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    folder = tmp_path / "locked"
    folder.mkdir()
    save_image(folder / "ok.png", 12, 16)
    secret = save_image(folder / "secret.png", 12, 16)
    secret.chmod(0)
    code, err = run_cli(["upscale", "--ckpt", ckpt, "--input", folder, "--output", tmp_path / "sr"], capsys)
    assert code == 0 and f"warning: skipping {secret}: not readable (permission denied)" in err
