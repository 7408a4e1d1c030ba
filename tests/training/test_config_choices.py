"""Every documented choice of the logger, trainer, callbacks and profile groups composes into a run that
works, or is refused before a run folder exists. Each choice is smoke-run with ``pcsr-train`` itself (a
profile keeps its own batch, queries, validation and workers; only its step counts are cut to two)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bad_input_kit import run_app
from pcsr_lightning.config import compose_config, config_names
from pcsr_lightning.io.weights import load_model
from pcsr_lightning.training.pipeline import prepare_run

FEW_STEPS = ["profile.steps.original=2", "profile.steps.stage0=2", "profile.steps.stage=2", "profile.val_every=2",
             "profile.checkpoint_every=1", "profile.log_every=1"]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("data")
    train, val = root / "train", root / "val"
    train.mkdir()
    val.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 256, (136, 136, 3), dtype=np.uint8)).save(train / f"t{i}.png")
    Image.fromarray(rng.integers(0, 256, (48, 48, 3), dtype=np.uint8)).save(val / "v.png")
    return train, val


def train(args: list, run: Path, images: tuple[Path, Path], capsys, monkeypatch) -> tuple[int, str]:
    from pcsr_lightning.apps.train_app import main as app

    train_dir, val_dir = images
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(run.parent / "wandb-home"))
    argv = ["data=image_folder", f"data.train.path={train_dir}", f"data.val.path={val_dir}", "data.crops_per_image=1",
            f"hydra.run.dir={run}", *args]
    return run_app(app, argv, capsys, monkeypatch)


def finished(run: Path) -> bool:
    return (run / "final.ckpt").is_file() and load_model(run).kind == "pcsr"


def test_the_groups_tested_here_are_all_the_documented_ones():
    assert config_names("logger") == ["csv", "none", "tensorboard", "wandb"]
    assert config_names("trainer") == ["cpu", "ddp", "gpu"]
    assert config_names("callbacks") == ["default", "none"]
    assert config_names("profile") == ["demo", "paper", "quick", "smoke", "table"]
    assert compose_config([]).trainer.accelerator == "cpu"  # the default trainer, which every run here uses


@pytest.mark.parametrize("logger", ["csv", "none", "tensorboard", "wandb"])
def test_every_logger_runs(images, tmp_path, capsys, monkeypatch, logger):
    run = tmp_path / "run"
    # callbacks=default with logger=none: the learning-rate monitor, which needs a logger, is left out
    # (tests/test_tracking.py runs wandb and TensorBoard with the default callbacks in a sweep)
    callbacks = "default" if logger in ("csv", "none") else "none"
    code, err = train(["profile=smoke", f"logger={logger}", f"callbacks={callbacks}"], run, images, capsys,
                      monkeypatch)
    assert code == 0 and "Traceback" not in err, err
    assert finished(run)
    expected = {"csv": ["csv"], "none": [], "tensorboard": ["csv", "tensorboard"], "wandb": ["csv", "wandb"]}
    assert sorted(p.name for p in run.iterdir() if p.name in ("csv", "tensorboard", "wandb")) == expected[logger]


PROFILE_DATA = ["data.crops_per_image=16"]  # a batch of 16 from the two training images


@pytest.mark.parametrize("profile", ["demo", "paper", "quick", "smoke", "table"])
def test_every_profile_passes_the_checks_before_a_run(images, tmp_path, profile):
    """Fast: the composed run checked as ``pcsr-train`` checks it (the network, its stages and optimizers, the
    trainer on this machine, the data), nothing written; the slow test below trains each."""
    train_dir, val_dir = images
    run = tmp_path / "run"
    cfg = compose_config([f"profile={profile}", "logger=none", "data=image_folder", f"data.train.path={train_dir}",
                          f"data.val.path={val_dir}", *PROFILE_DATA], run)
    prepared = prepare_run(cfg)
    assert [plan.name for plan in prepared.plans] == ["stage0", "stage1"] and not run.exists()


@pytest.mark.slow
@pytest.mark.parametrize("profile", ["demo", "paper", "quick", "table"])
def test_every_profile_runs(images, tmp_path, capsys, monkeypatch, profile):
    run = tmp_path / "run"
    code, err = train([f"profile={profile}", "logger=none", "callbacks=none", *FEW_STEPS, *PROFILE_DATA], run,
                      images, capsys, monkeypatch)
    assert code == 0 and finished(run), err


def test_the_smoke_profile_and_no_callbacks_run(images, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    code, err = train(["profile=smoke", "logger=none", "callbacks=none"], run, images, capsys, monkeypatch)
    assert code == 0 and finished(run), err


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
@pytest.mark.parametrize("trainer", ["gpu", "ddp"])
def test_gpu_trainers_are_refused_up_front_without_a_gpu(images, tmp_path, capsys, monkeypatch, trainer):
    run = tmp_path / "new" / "run"
    code, err = train(["profile=smoke", "logger=none", f"trainer={trainer}"], run, images, capsys, monkeypatch)
    assert code == 2 and "this machine has no CUDA device" in err and "Traceback" not in err
    assert not (tmp_path / "new").exists()
