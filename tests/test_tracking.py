"""Experiment tracking: what a sweep's offline wandb runs, CSV logs and TensorBoard files hold."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pcsr_lightning.tracking import model_tags, offline_runs, read_offline_run, run_name
from pcsr_lightning.training.loggers import with_stage_steps

BIN = Path(sys.executable).parent
QUIET = ("module(s) in eval mode", "ckpt_path=None", "litlogger", "Skipping setting a default `ModelSummary`",
         "LeafSpec", "no last checkpoint")


def test_run_names_tags_and_stage_steps():
    assert run_name("carn_pcsr", ["experiment=carn_pcsr", "eval.k=0.5", "logger=wandb"],
                    ["experiment", "logger"]) == "carn_pcsr k=0.5"
    assert run_name("x", ["+model.num_classes=3", "paths.log_dir=/tmp", "flag"], ["paths"]) == "x num_classes=3"
    assert model_tags("carn", "pcsr", 3) == ["carn", "pcsr", "M=3"]
    assert model_tags("fsrcnn", "original", None) == ["fsrcnn", "original"]
    assert with_stage_steps({"stage1/lr": 0.1, "stage1/train_loss": 2.0, "epoch": 0, "other": 1}, 7) == {
        "stage1/lr": 0.1, "stage1/train_loss": 2.0, "other": 1, "stage1/step": 7}


def env_for(tmp_path: Path) -> dict:
    return {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(tmp_path / "wandb-home"),
            "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"), "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config")}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """``pcsr-train -m`` over two backbones with wandb, as a user runs it (fewer steps)."""
    tmp = tmp_path_factory.mktemp("sweep")
    proc = subprocess.run(
        [str(BIN / "pcsr-train"), "-m", "experiment=fsrcnn_pcsr,carn_pcsr", "profile=smoke", "logger=wandb",
         "profile.steps.stage0=2", "profile.steps.stage=2", f"hydra.sweep.dir={tmp / 'sweep'}"],
        capture_output=True, text=True, env=env_for(tmp), cwd=tmp, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return tmp / "sweep", proc


def test_sweep_gives_each_job_a_named_grouped_tagged_run(sweep):
    folder, proc = sweep
    for quiet in QUIET:
        assert quiet not in proc.stderr + proc.stdout, quiet
    assert "stage1" in proc.stdout and "FLOPs: paper convention" in proc.stdout
    jobs = sorted(p.parent for p in folder.glob("*/manifest.json"))
    assert [j.name for j in jobs] == [f"experiment={e},logger=wandb,profile.steps.stage0=2,profile.steps.stage=2,"
                                      "profile=smoke" for e in ("carn_pcsr", "fsrcnn_pcsr")]
    with open(folder / "summary.csv", newline="") as f:  # the sweep's summary: each job's stages
        summary = list(csv.DictReader(f))
    assert {(r["job"].split(",")[0], r["stage"]) for r in summary} == {
        (f"experiment={e}", s) for e in ("carn_pcsr", "fsrcnn_pcsr") for s in ("stage0", "stage1")}
    for job, backbone in zip(jobs, ("carn", "fsrcnn")):
        runs = offline_runs(job / "wandb")
        assert len(runs) == 1  # one run per job, in the job's folder
        run = read_offline_run(runs[0])
        assert run["name"] == f"{backbone}_pcsr profile=smoke stage0=2 stage=2"
        assert run["group"] == f"{folder.parent.name}/sweep" and run["job_type"] == "train"
        assert run["tags"] == [backbone, "pcsr", "M=2"] and run["exit_code"] == 0
        config = run["config"]  # the whole resolved config
        assert config["backbone"]["name"] == backbone and config["model"]["num_classes"] == 2
        assert config["profile"]["steps"]["stage0"] == 2 and config["optimizer"]["lr"] == config["backbone"]["lr"]
        assert config["tracking"]["name"] == run["name"] and config["paths"]["output_dir"] == str(job)
        # every stage on its own step axis; no shared global step, no epochs
        assert run["metrics"]["stage0/*"] == "stage0/step" and run["metrics"]["stage1/*"] == "stage1/step"
        keys = {k for row in run["history"] for k in row}
        assert not {"epoch", "trainer/global_step", "lr-Adam"} & keys
        assert {"stage0/lr", "stage1/lr", "stage0/train_loss", "stage1/train_p_heavy", "stage0/val_psnr_y_heavy",
                "stage1/val_psnr_k0", "stage1/val_psnr_y_k0", "stage1/val_ssim_k0", "stage1/val_heavy_share_k0"} <= keys
        for row in run["history"]:
            stages = {k.split("/")[0] for k in row if "/" in k and not k.startswith("_")}
            assert all(f"{s}/step" in row for s in stages), row
        lr1 = [(r["stage1/step"], r["stage1/lr"]) for r in run["history"] if "stage1/lr" in r]
        assert [s for s, _ in lr1] == [0, 1] and lr1[0][1] == config["backbone"]["lr"]
        # media: bicubic | SR | HR crops per validation, the class map once routing, the k curve at the end
        assert any(f.startswith("media/images/stage0/val_images") for f in run["files"])
        assert any(f.startswith("media/images/stage1/val_class_maps") for f in run["files"])
        crops = next(r["stage1/val_images/captions"] for r in run["history"] if "stage1/val_images/captions" in r)
        assert crops[0].startswith("bicubic | SR | HR")
        table = next(f for f in run["files"] if f.startswith("media/table/k_sweep/psnr_vs_gflops"))
        curve = json.loads((runs[0] / "files" / table).read_text())
        assert curve["columns"][:4] == ["setting", "k", "gflops_paper", "psnr"]
        assert [row[1] for row in curve["data"]] and {row[0] for row in curve["data"]} == {"k"}
        chart = config["_wandb"]["visualize"]["k_sweep/psnr_vs_gflops"]["panel_config"]
        assert chart["fieldSettings"]["x"] == "gflops_paper" and chart["fieldSettings"]["y"] == "psnr"
        # the CSV log has the same keys, and the k sweep beside it
        csv_dir = job / "csv" / "version_0"
        header = next(csv.reader((csv_dir / "metrics.csv").open()))
        assert {"stage0/step", "stage1/step", "stage1/lr", "stage1/val_ssim_k0"} <= set(header)
        assert "epoch" not in header
        sweep_rows = list(csv.DictReader((csv_dir / "k_sweep.csv").open()))
        assert {r["setting"] for r in sweep_rows} == {"k", "all-light", "all-heavy"}
        assert "backbone:" in (csv_dir / "hparams.yaml").read_text()


def test_eval_sweep_gives_each_job_its_run(sweep, tmp_path):
    folder, _ = sweep
    ckpt = json.loads((folder / "experiment=fsrcnn_pcsr,logger=wandb,profile.steps.stage0=2,profile.steps.stage=2,"
                                "profile=smoke" / "manifest.json").read_text())["final_checkpoint"]
    hr = tmp_path / "hr"
    hr.mkdir()
    from PIL import Image

    from conftest import sample_photo

    img = (sample_photo("chelsea")[:, :64, :80] * 255).round().byte().permute(1, 2, 0).numpy()
    Image.fromarray(img).save(hr / "cat.png")
    proc = subprocess.run(
        # a path inside a sweep folder holds '=' and ',' (the job folders' names): quoted for Hydra
        [str(BIN / "pcsr-eval"), "-m", f"eval.ckpt='{ckpt}'", f"eval.hr_dir={hr}", "eval.k=0,1", "wandb=true",
         "eval.metrics=[psnr,psnr_y,ssim]", f"hydra.sweep.dir={tmp_path / 'eval'}"],
        capture_output=True, text=True, env=env_for(tmp_path), cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for job, k in ((f"eval.k={k},eval.metrics=[psnr,psnr_y,ssim]", k) for k in ("0", "1")):
        runs = offline_runs(tmp_path / "eval" / job / "wandb")
        assert len(runs) == 1
        run = read_offline_run(runs[0])
        assert run["name"] == f"fsrcnn_pcsr k={k} metrics=[psnr,psnr_y,ssim]"  # Hydra puts swept keys first
        assert run["job_type"] == "eval" and run["tags"] == ["fsrcnn", "pcsr", "M=2"]
        assert run["group"] == f"{tmp_path.name}/eval" and run["exit_code"] == 0
        assert run["config"]["eval"]["k"] == float(k)
        per_image = next(f for f in run["files"] if f.startswith("media/table/eval/per_image"))
        table = json.loads((runs[0] / "files" / per_image).read_text())
        assert {"image", "psnr", "psnr_y", "ssim", "gflops_paper"} <= set(table["columns"])
        assert f"pcsr k={k}/ssim" in run["summary"]
        rows = list(csv.DictReader((tmp_path / "eval" / job / "per_image.csv").open()))
        assert rows[0]["ssim"] and rows[0]["psnr_y"]


def test_failed_job_finishes_its_run_with_exit_code_1(tmp_path, monkeypatch):
    import lightning as L

    from pcsr_lightning.apps.train_app import run_job
    from pcsr_lightning.config import compose_config

    for key, value in env_for(tmp_path).items():
        monkeypatch.setenv(key, value)

    class Boom(L.Callback):
        def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
            raise RuntimeError("boom")

    cfg = compose_config(["profile=smoke", "logger=wandb", "callbacks=none", "experiment=fsrcnn_original"],
                         tmp_path / "run")
    with pytest.raises(RuntimeError, match="boom"):
        run_job(cfg, callbacks=[Boom()])
    import wandb

    wandb.teardown()  # the run is finished; this waits until wandb's service has written it out
    found = offline_runs(tmp_path / "run" / "wandb")
    run = read_offline_run(found[0])
    assert run["exit_code"] == 1, (found, run)
    assert run["name"] == "fsrcnn_original" and run["tags"] == ["fsrcnn", "original"]


def test_tensorboard_logger(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from pcsr_lightning.apps.train_app import run_job
    from pcsr_lightning.config import compose_config

    cfg = compose_config(["profile=smoke", "logger=tensorboard", "profile.steps.stage0=2", "profile.steps.stage=2",
                          "callbacks.model_summary.max_depth=0"], tmp_path / "run")
    run_job(cfg)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    scalars, images = set(events.Tags()["scalars"]), set(events.Tags()["images"])
    assert {"stage0/lr", "stage1/val_psnr_k0", "stage1/val_ssim_k0", "k_sweep/psnr_vs_mflops"} <= scalars
    assert "stage1/val_class_maps/0" in images and "stage0/val_images/0" in images
