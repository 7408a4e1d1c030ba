"""Studies: every config composes into a plan, a study runs end to end on tiny folders and resumes, and a
report folder that is a train or val folder is refused before anything is written."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from factories import save_tiny
from pcsr_lightning.config import config_dir, config_names
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.io.images import read_image, write_png
from pcsr_lightning.io.runs import JobResult
from pcsr_lightning.studies.actions import ACTIONS, Context, against_pcsr, mosaics
from pcsr_lightning.studies.driver import study_plan
from pcsr_lightning.studies.plan import ACTION_NAMES, Step, StudyError, check_photos, jobs_of, plan_of
from pcsr_lightning.studies.select import NothingChosen, choose, largest_within

STUDIES = config_names("study")


def composed(name: str, overrides=()):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="study", overrides=[f"study={name}", *overrides], return_hydra_config=True)


def test_the_action_names_the_plan_checks_are_the_actions():
    assert tuple(ACTIONS) == ACTION_NAMES


@pytest.mark.parametrize("name", STUDIES)
def test_every_study_composes_into_a_plan(name):
    plan = study_plan(composed(name))
    assert plan.name and plan.steps
    assert str(composed(name).hydra.sweep.dir).endswith(f"studies/{plan.name}")


def test_a_selection_on_report_photos_is_refused():
    study = {"name": "s", "steps": {"ev": {"action": "eval", "role": "report"},
                                    "pick": {"select": {"from": "ev", "choose": "skip_flat"}}}}
    with pytest.raises(StudyError, match="chosen on the val photos only"):
        plan_of(study, {}, ACTION_NAMES)


def test_report_photos_in_or_sharing_a_file_with_the_train_or_val_folder_are_refused(tmp_path):
    val = tmp_path / "val"
    val.mkdir()
    (val / "a.png").write_bytes(b"x")
    with pytest.raises(StudyError, match="is also the val folder"):
        check_photos({"val": val, "report": val / "sub"})
    report = tmp_path / "report"
    report.mkdir()
    (report / "b.png").symlink_to(val / "a.png")
    with pytest.raises(StudyError, match="share 1 photo"):
        check_photos({"val": val, "report": report})
    (report / "b.png").unlink()
    assert check_photos({"val": val, "report": report})["report"] == report.resolve()
    with pytest.raises(StudyError, match="photos.test is not a role"):
        check_photos({"test": val})


def test_largest_within_keeps_the_largest_threshold_within_the_budget():
    rows = [{"skip_flat": None, "psnr": 30.0}, {"skip_flat": 0.1, "psnr": 29.99}, {"skip_flat": 0.2, "psnr": 29.95},
            {"skip_flat": 0.3, "psnr": 29.949}, {"skip_flat": 0.4, "psnr": 29.5}]
    assert largest_within(rows, "skip_flat", budget=0.05) == 0.2
    assert largest_within(rows, "skip_flat", budget=0.0511) == 0.3
    with pytest.raises(NothingChosen, match="no skip_flat keeps psnr within 0.001"):
        largest_within(rows, "skip_flat", budget=0.001)


def test_choose_picks_once_per_group_and_jobs_cross_on_shared_settings():
    results = [JobResult(f"val/family={f}", {"family": f}, [{"skip_flat": None, "psnr": 30.0, "k": 0.0},
                                                            {"skip_flat": t, "psnr": 29.98, "k": 0.0}])
               for f, t in (("carn", 0.04), ("fsrcnn", 0.3))]
    picks = choose({"from": "val", "choose": "skip_flat", "by": ["family"], "where": {"k": 0.0}}, results)
    assert picks == [{"family": "carn", "skip_flat": 0.04}, {"family": "fsrcnn", "skip_flat": 0.3}]
    models = [JobResult(f"m/family={f}", {"family": f}, [], {"pcsr": f"/x/{f}.ckpt"}) for f in ("carn", "fsrcnn")]
    jobs = jobs_of(Step("r", "eval", "report", {"k": [0, 1]}, ["m", "p"]), {"m": models}, {"p": picks})
    assert [j.folder for j in jobs] == ["r/family=carn,k=0,skip_flat=0.04", "r/family=fsrcnn,k=0,skip_flat=0.3",
                                        "r/family=carn,k=1,skip_flat=0.04", "r/family=fsrcnn,k=1,skip_flat=0.3"]
    assert jobs[0].point["pcsr"] == "/x/carn.ckpt"


def _study(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "pcsr_lightning.apps.launch", "pcsr-study", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.fixture
def gate_folders(tmp_path):
    for role, names in {"val": ["chelsea", "coffee"], "report": ["astronaut", "rocket"]}.items():
        (tmp_path / role).mkdir()
        for name in names:
            write_png(sample_photo(name)[:, :96, :128], tmp_path / role / f"{name}.png")
    for name, kind, backbone in (("cp", "pcsr", "carn"), ("co", "original", "carn"), ("fp", "pcsr", "fsrcnn"),
                                 ("fo", "original", "fsrcnn")):
        save_tiny(tmp_path / f"{name}.ckpt", kind=kind, backbone=backbone)
    return tmp_path


GATE_ARGS = ("study=gate_pick", "photos.val=val", "photos.report=report", "models.carn.pcsr=cp.ckpt",
             "models.carn.original=co.ckpt", "models.fsrcnn.pcsr=fp.ckpt", "models.fsrcnn.original=fo.ckpt",
             "hr_size=64x96", "thresholds.carn=[0.5,1,2]", "thresholds.fsrcnn=[0.5,1]", "report_ks=[0,1]",
             "textures=[grass]", "samples=[camera]")


def test_the_gate_study_runs_end_to_end_and_resumes(gate_folders):
    run = _study(gate_folders, *GATE_ARGS)
    assert run.returncode == 0, run.stderr
    root = gate_folders / "outputs" / "studies" / "gate_pick"
    val = json.loads((root / "val" / "family=carn" / "result.json").read_text())
    chosen = json.loads((root / "pick" / "result.json").read_text())["rows"]
    plain = next(r for r in val["rows"] if r["model"] == "pcsr" and r["skip_flat"] is None)
    within = [r["skip_flat"] for r in val["rows"] if r["skip_flat"] is not None and plain["psnr"] - r["psnr"] <= 0.05]
    assert {"family": "carn", "skip_flat": max(within)} in chosen
    carn = next(c for c in chosen if c["family"] == "carn")
    report = root / "report_2k" / f"family=carn,skip_flat={carn['skip_flat']:g}"
    assert (report / "per_image.csv").is_file() and (report / "result.json").is_file()
    with open(root / "summary.csv", newline="") as f:
        jobs = {row["job"] for row in csv.DictReader(f)}
    assert {"models/family=carn", "val/family=fsrcnn", "pick", "report"} <= jobs
    assert "report crops, k = 0" in (root / "report" / "report.md").read_text()
    for step, photos in (("textured", {"texture_grass.png", "mean"}), ("samples", {"camera.png", "mean"})):
        with open(root / step / f"family=carn,skip_flat={carn['skip_flat']:g}" / "per_image.csv", newline="") as f:
            assert {r["image"] for r in csv.DictReader(f)} == photos
    assert (root / "report" / "curve.png").is_file()
    before = (report / "result.json").stat().st_mtime_ns
    again = _study(gate_folders, *GATE_ARGS)
    assert again.returncode == 0, again.stderr
    assert "step report_2k: 2 job(s), 2 finished before (not run again)" in again.stdout
    assert (report / "result.json").stat().st_mtime_ns == before
    (report / "result.json").unlink()  # as a study stopped during that job leaves it
    again = _study(gate_folders, *GATE_ARGS)
    assert again.returncode == 0, again.stderr
    assert "step report_2k: 2 job(s), 1 finished before (not run again)" in again.stdout
    assert (report / "result.json").is_file()


def test_a_study_reporting_on_its_val_folder_exits_2_and_leaves_nothing(gate_folders):
    args = [a if a != "photos.report=report" else "photos.report=val" for a in GATE_ARGS]
    run = _study(gate_folders, *args)
    assert run.returncode == 2
    assert "photos.report" in run.stderr and "is also the val folder" in run.stderr
    assert not (gate_folders / "outputs").exists()


def test_a_sweep_on_the_command_line_is_refused(gate_folders):
    run = _study(gate_folders, *GATE_ARGS, "budget=0.05,0.1")
    assert run.returncode == 2 and "study.steps.*.grid" in run.stderr
    assert not (gate_folders / "outputs").exists()


@pytest.mark.slow  # a process per job: about a minute on 2 cores
def test_a_study_runs_on_the_submitit_launcher_too(gate_folders):
    run = _study(gate_folders, *GATE_ARGS, "hydra/launcher=local", "families=[carn]")
    assert run.returncode == 0, run.stderr[-3000:]
    root = gate_folders / "outputs" / "studies" / "gate_pick"
    assert len(list((root / ".submitit").glob("*/*_log.out"))) >= 5  # each job its own process
    assert (root / "report" / "report.md").is_file() and (root / "report_2k").is_dir()


def test_the_released_study_runs_end_to_end(gate_folders):
    run = _study(gate_folders, "study=released", "photos.report=report", "models.carn.pcsr=cp.ckpt",
                 "models.carn.original=co.ckpt", "models.fsrcnn.pcsr=fp.ckpt", "models.fsrcnn.original=fo.ckpt",
                 "ks=[0,1]")
    assert run.returncode == 0, run.stderr[-3000:]
    root = gate_folders / "outputs" / "studies" / "released"
    with open(root / "summary.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    report = {(r["family"], r["setting"]) for r in rows if r["job"].startswith("report/")}
    assert report == {(f, s) for f in ("carn", "fsrcnn") for s in ("k", "all-light", "all-heavy", "original")}
    samples = {r["image"] for r in csv.DictReader((root / "samples_eval" / "family=carn" / "per_image.csv").open())}
    assert {"chelsea.png", "rocket.png"} <= samples
    assert (root / "tables" / "curve.png").is_file()


def test_every_study_is_in_the_docs_table():
    table = (Path(__file__).parents[2] / "docs" / "studies.md").read_text()
    assert [name for name in STUDIES if f"| `{name}` |" not in table] == []


def test_the_onnx_runtime_study_runs_end_to_end(gate_folders):
    pytest.importorskip("onnxruntime")
    run = _study(gate_folders, "study=onnx_runtime", "photos.report=report", "models.pcsr=cp.ckpt",
                 "models.original=co.ckpt", "hr_size=64x96", "rounds=1", "threads=1")
    assert run.returncode == 0, run.stderr[-3000:]
    root = gate_folders / "outputs" / "studies" / "onnx_runtime"
    rows = json.loads((root / "runtimes" / "result.json").read_text())["rows"]
    assert {(r["image"], r["variant"]) for r in rows} == {
        (i, v) for i in ("astronaut.png", "rocket.png") for v in ("pcsr", "original", "pcsr_vs_original")}
    assert all(r["within_one_level"] > 0.99 for r in rows if "within_one_level" in r)


def test_mosaics_tile_the_role_photos_at_their_own_resolution(tmp_path):
    photos = tmp_path / "report"
    photos.mkdir()
    for name in ("astronaut", "coffee"):
        write_png(sample_photo(name)[:, :80, :120], photos / f"{name}.png")
    out = mosaics(Context(photos, tmp_path / "job", tmp_path), "64x90", grid="2x3", count=2)
    made = sorted((tmp_path / "job" / "photos").glob("*.png"))
    assert out.values == {"hr_dir": str(tmp_path / "job" / "photos")} and len(made) == 2
    first, source = read_image(made[0]), read_image(photos / "astronaut.png")
    assert first.shape == (3, 64, 90)
    # cell 0 of mosaic 0 is a 32x30 crop of the first photo at its own scale, found somewhere in it
    cell = first[:, :32, :30]
    found = any(torch.equal(cell, source[:, y : y + 32, x : x + 30]) for y in range(49) for x in range(91))
    assert found
    assert not torch.equal(read_image(made[1]), first)  # the second mosaic shows other parts
    with pytest.raises(ValueError, match="smaller than a 100x30 cell"):
        mosaics(Context(photos, tmp_path / "job2", tmp_path), "200x90", grid="2x3")


def test_gated_rows_are_compared_with_pcsr_on_the_same_image_and_k():
    rows = [{"image": "a", "model": "pcsr", "k": 0.0, "skip_flat": None, "psnr": 30.0, "gflops_paper": 10.0},
            {"image": "a", "model": "pcsr", "k": 0.0, "skip_flat": 0.5, "psnr": 29.96, "gflops_paper": 4.0},
            {"image": "b", "model": "pcsr", "k": 0.0, "skip_flat": None, "psnr": 20.0, "gflops_paper": 8.0},
            {"image": "b", "model": "pcsr", "k": 0.0, "skip_flat": 0.5, "psnr": 20.01, "gflops_paper": 8.0}]
    out = against_pcsr(rows)
    assert out[1]["vs_pcsr_db"] == pytest.approx(-0.04) and out[1]["gflops_vs_pcsr"] == 0.4
    assert out[3]["vs_pcsr_db"] == pytest.approx(0.01) and "vs_pcsr_db" not in out[0]


def test_the_gate_budget_study_runs_end_to_end(gate_folders):
    train = gate_folders / "train"
    train.mkdir()
    write_png(sample_photo("camera").expand(3, -1, -1)[:, :96, :128].contiguous(), train / "camera.png")
    run = _study(gate_folders, "study=gate_budget", "photos.train=train", "photos.val=val", "photos.report=report",
                 "models.carn.pcsr=cp.ckpt", "models.carn.original=co.ckpt", "models.fsrcnn.pcsr=fp.ckpt",
                 "models.fsrcnn.original=fo.ckpt", "mosaic_size=64x96", "mosaic_grid=2x2", "samples=[chelsea]")
    assert run.returncode == 0, run.stderr[-3000:]
    root = gate_folders / "outputs" / "studies" / "gate_budget"
    report = (root / "report" / "report.md").read_text()
    assert "photos over the budget" in report and "| carn | eval_report | 2 |" in report
    quantiles = json.loads((root / "calibration" / "family=carn" / "result.json").read_text())["rows"][-1]
    assert quantiles["image"] == "quantiles" and quantiles["q0"] <= quantiles["q0.5"]


def test_a_study_reporting_on_its_training_folder_exits_2_and_leaves_nothing(gate_folders):
    run = _study(gate_folders, "study=gate_budget", "photos.train=report", "photos.val=val", "photos.report=report")
    assert run.returncode == 2, run.stderr[-2000:]
    assert "photos.report" in run.stderr and "is also the train folder" in run.stderr
    assert "Traceback" not in run.stderr and not (gate_folders / "outputs").exists()
