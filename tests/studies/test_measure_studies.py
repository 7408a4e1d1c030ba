"""The measurement studies (speed, the paper's table, training speed, DIV2K, the PNG level, upscales in
fresh processes) end to end on tiny models and folders, and their actions' parts on tiny inputs."""

from __future__ import annotations

import csv
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from PIL import Image

from factories import save_tiny
from pcsr_lightning.config import config_dir
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.io.images import write_png
from pcsr_lightning.studies import measurements
from pcsr_lightning.studies.context import Context
from pcsr_lightning.studies.driver import study_plan


def _study(cwd: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    cmd = [sys.executable, "-m", "pcsr_lightning.apps.launch", "pcsr-study", *overrides]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def composed(name: str, overrides=()):
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name="study", overrides=[f"study={name}", *overrides], return_hydra_config=True)


def _result(root: Path, job: str) -> dict:
    return json.loads((root / job / "result.json").read_text())


@pytest.fixture
def tiny_release(tmp_path):
    for name, kind, backbone in (("cp", "pcsr", "carn"), ("co", "original", "carn"), ("fp", "pcsr", "fsrcnn"),
                                 ("fo", "original", "fsrcnn")):
        save_tiny(tmp_path / f"{name}.ckpt", kind=kind, backbone=backbone)
    return tmp_path


MODELS = ("models.carn.pcsr=cp.ckpt", "models.carn.original=co.ckpt", "models.fsrcnn.pcsr=fp.ckpt",
          "models.fsrcnn.original=fo.ckpt")


def test_the_speed_study_benches_pcsr_beside_the_original_and_the_reference_loop(tiny_release):
    run = _study(tiny_release, "study=speed_cpu", *MODELS, "families=[fsrcnn]", "sizes=[32x48]", "repeats=1",
                 "reference_repeats=1", "routed_profile=false")
    assert run.returncode == 0, run.stderr[-3000:]
    root = tiny_release / "outputs" / "studies" / "speed_cpu"
    bench = _result(root, "bench/family=fsrcnn,hr_size=32x48,precision=fp32")
    summary = next(r for r in bench["rows"] if r["variant"] == "summary")
    assert summary["ratio_pcsr"] > 0 and summary["classes_identical"] is True and summary["speedup_routed"] > 0
    variants = {r["variant"] for r in bench["rows"]}
    assert {"original", "pcsr k=0", "pcsr k=1", "reference k=0"} <= variants
    assert all(r["peak_mb"] is not None for r in bench["rows"] if r["variant"] != "summary")
    report = json.loads((root / "bench/family=fsrcnn,hr_size=32x48,precision=fp32/bench-mosaic.json").read_text())
    assert report["hr_size"] == [32, 48] and "fast_vs_reference" in report
    md = (root / "report" / "report.md").read_text()
    assert "## fast path against the reference loop" in md and "| fsrcnn | 32x48 | fp32 |" in md


def test_the_table_study_takes_checkpoints_without_training(tiny_release):
    hr = tiny_release / "Test2K"
    hr.mkdir()
    write_png(sample_photo("chelsea")[:, :144, :144], hr / "cat.png")
    run = _study(tiny_release, "study=table", "~study.steps.train", "rows.FSRCNN=fo.ckpt", "rows.FSRCNN-PCSR=fp.ckpt",
                 "datasets.Test2K=Test2K", "ks=[0,1]", "out=copied")
    assert run.returncode == 0, run.stderr[-3000:]
    root = tiny_release / "outputs" / "studies" / "table"
    cells = {r["row"]: r for r in _result(root, "table")["rows"]}
    assert set(cells) == {"FSRCNN", "FSRCNN-PCSR"} and cells["FSRCNN-PCSR"]["paper_psnr"] == 25.61
    assert cells["FSRCNN-PCSR"]["k"] in (0.0, 1.0) and not (root / "train").exists()
    with open(tiny_release / "copied" / "table.csv", newline="") as f:
        assert {r["row"] for r in csv.DictReader(f)} == {"FSRCNN", "FSRCNN-PCSR"}
    assert "| FSRCNN-PCSR |" in (tiny_release / "copied" / "table.md").read_text()
    assert (root / "table" / "curve_Test2K.png").is_file()
    again = _study(tiny_release, "study=table", "~study.steps.train", "rows.FSRCNN=fo.ckpt", "datasets.Test2K=Test2K",
                   "ks=[0,1]")
    assert again.returncode == 0, again.stderr[-3000:]  # the table is measured again on what is given now
    assert [r["row"] for r in _result(root, "table")["rows"]] == ["FSRCNN"]


def _make_reproduce_table(tmp_path: Path, *variables: str) -> list[str]:
    """The pcsr-study arguments ``make reproduce-table`` runs with these variables (``make -n``)."""
    venv = tmp_path / "venv"
    venv.mkdir(exist_ok=True)
    (venv / ".installed").touch()
    root = Path(__file__).parents[2]
    out = subprocess.run(["make", "-s", "-n", "-C", str(root), "reproduce-table", f"VENV={venv}", *variables],
                         capture_output=True, text=True, check=True).stdout
    words = shlex.split(out.replace("\\\n", " "))
    return words[words.index(f"{venv}/bin/pcsr-study") + 1 :]


def test_make_reproduce_table_passes_its_variables_to_the_table_study(tmp_path):
    trains = _make_reproduce_table(tmp_path)
    assert trains[0] == "study=table" and "~study.steps.train" not in trains
    assert "out=results/table" in trains and "train_profile=table" in trains
    given = _make_reproduce_table(tmp_path, "CARN=c.ckpt", "CARN_PCSR=runs/cp", "TEST2K=/d/2k", "URBAN100=/d/u",
                                  "TABLE_PROFILE=smoke", "TABLE_ARGS=ks=[0]")
    assert "~study.steps.train" in given and "ks=[0]" in given
    cfg = composed("table", [a for a in given if a != "study=table" and not a.startswith("paths.")])
    assert cfg.rows.CARN == "c.ckpt" and cfg.rows["CARN-PCSR"] == "runs/cp" and cfg.rows.FSRCNN is None
    assert cfg.datasets.Test2K == "/d/2k" and cfg.datasets.Urban100 == "/d/u" and cfg.ks == [0]
    assert [s.name for s in study_plan(cfg).steps] == ["table"]
    runs = _make_reproduce_table(tmp_path, "TABLE_RUNS=old/runs")
    assert "~study.steps.train" in runs and "runs=old/runs" in runs


def test_the_table_study_trains_its_rows_then_measures_them(tmp_path):
    run = _study(tmp_path, "study=table", "experiments=[fsrcnn_pcsr]", "train_profile=smoke", "ks=[0]")
    assert run.returncode == 0, run.stderr[-3000:]
    root = tmp_path / "outputs" / "studies" / "table"
    assert (root / "train" / "experiment=fsrcnn_pcsr" / "run" / "manifest.json").is_file()
    [cell] = _result(root, "table")["rows"]
    assert cell["row"] == "FSRCNN-PCSR" and cell["dataset"] == "samples" and cell["k"] == 0.0


def test_a_table_without_checkpoints_is_refused_naming_what_to_give(tmp_path):
    run = _study(tmp_path, "study=table", "~study.steps.train")
    assert run.returncode == 2 and "no checkpoints: give rows.NAME=CKPT" in run.stderr


def test_train_speed_times_every_stage_and_reads_a_scale_range():
    rows = measurements.train_speed(Context(None, Path("."), Path(".")), "fsrcnn_pcsr", queries=64, batch_size=2,
                                    steps=1, warmup=0, model="pcsr_routed").rows
    assert [r["stage"] for r in rows] == ["stage0", "stage1", "stage1_routed"]
    assert all(r["ms_per_step"] > 0 and r["queries"] == 64 and r["batch"] == 2 for r in rows)
    ranged = measurements.time_stages("fsrcnn_pcsr", 64, measurements.one_batch(2, 64), steps=1, warmup=0,
                                      overrides=["data.scale=[2,4]", "data.val_scales=[2,4]"])
    assert [r["stage"] for r in ranged] == ["stage0", "stage1"]
    with pytest.raises(ValueError, match="steps must be >= 1"):
        measurements.time_stages("fsrcnn_pcsr", 64, measurements.one_batch(2, 64), steps=0)


def test_the_div2k_like_folder_has_the_published_layout(tmp_path):
    paths = measurements.make_div2k_like(tmp_path, 1)
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == ["DIV2K_train_HR/0001.png"]
    with Image.open(paths[0]) as img:
        arr = np.asarray(img)
    assert arr.shape == (1356, 2040, 3) and arr.std() > 20  # photo texture, not a flat image
    assert (tmp_path / "DIV2K_valid_HR" / "0801.png").is_file()
    sparse = tmp_path / "sparse"
    sparse.mkdir()
    with open(sparse / "f", "wb") as fh:
        fh.truncate(10 * 2**20)  # allocated blocks, not the apparent size
    (sparse / "g").write_bytes(b"x" * 8192)
    assert 8192 <= measurements.disk_bytes(sparse) < 2**20


def test_png_write_checks_the_pixels_and_the_study_reports_each_level(tmp_path):
    rng = np.random.default_rng(0)
    arr = (np.linspace(0, 200, 64)[None, :, None] + rng.integers(0, 40, (32, 64, 3))).astype(np.uint8)
    ms, sizes = measurements.png_write(arr, [0, 1, 9], rounds=2)
    assert set(ms) == set(sizes) == {0, 1, 9} and all(v > 0 for v in ms.values()) and sizes[0] > sizes[1] >= sizes[9]
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in ("chelsea", "coffee"):
        write_png(sample_photo(name)[:, :80, :120], photos / f"{name}.png")
    write_png(sample_photo("rocket")[:, :40, :40], photos / "small.png")  # smaller than hr_size: left out
    run = _study(tmp_path, "study=png_level", "photos.report=photos", "hr_size=64x96", "levels=[0,6]", "rounds=1")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = _result(tmp_path / "outputs" / "studies" / "png_level", "levels")["rows"]
    assert [r["level"] for r in rows] == [0, 6] and all(r["photos"] == 2 for r in rows)
    assert rows[1]["vs_ref_time"] == 1.0 and rows[0]["vs_ref_size"] > 1


def test_the_div2k_study_measures_a_generated_folder_and_removes_it(tmp_path):
    run = _study(tmp_path, "study=div2k_scale", "images=1", "workers=1", "batches=1", "queries=64")
    assert run.returncode == 0, run.stderr[-3000:]
    root = tmp_path / "outputs" / "studies" / "div2k_scale"
    [row] = _result(root, "div2k")["rows"]
    assert row["windows"] > 100 and 0 < row["disk_mb_per_image"] < row["old_format_mb_per_image"]
    assert row["crops_per_s_one_worker"] > 0 and row["div2k_gb"] == pytest.approx(row["disk_mb_per_image"] * 0.8)
    assert not (root / "div2k" / "DIV2K").exists()


def test_the_tile_study_runs_fresh_processes_and_compares_their_pngs(tiny_release):
    run = _study(tiny_release, "study=tile_4k", "pcsr=cp.ckpt", "hr_size=64x96", "tiles=[0,8]", "rounds=1",
                 "threads=1")
    assert run.returncode == 0, run.stderr[-3000:]
    rows = _result(tiny_release / "outputs" / "studies" / "tile_4k", "upscale")["rows"]
    runs = [r for r in rows if r["round"] == 1]
    assert [r["tile"] for r in runs] == [0, 8] and all(r["wall_s"] > 0 and r["peak_rss_mib"] > 50 for r in runs)
    medians = {r["tile"]: r for r in rows if r["round"] == "median"}
    assert medians[0]["same_png_as_first_tile"] is True and isinstance(medians[8]["same_png_as_first_tile"], bool)


def test_a_failing_upscale_process_names_its_log(tmp_path):
    with pytest.raises(ValueError, match="exited 2: see .*bad.log"):
        measurements.timed_process([sys.executable, "-c", "import sys; sys.exit(2)", "", ""], tmp_path / "bad.log")


def test_the_demo_study_trains_measures_and_draws_like_pcsr_demo(tmp_path):
    run = _study(tmp_path, "study=demo", "train_profile=smoke")
    assert run.returncode == 0, run.stderr[-3000:]
    root = tmp_path / "outputs" / "studies" / "demo"
    rows = _result(root, "demo")["rows"]
    methods = [r["method"] for r in rows]
    assert methods[:2] == ["bicubic", "PCSR, all heavy (U_0)"] and methods.count("picture k") == 3
    assert all(r["psnr"] > 10 for r in rows if r["method"] != "picture k")
    assert (root / "demo" / "demo.png").is_file() and (root / "demo" / "demo.csv").is_file()
    assert (root / "demo" / "run" / "manifest.json").is_file()
    assert "x4 PSNR on the held-out photos" in (root / "report" / "report.md").read_text()


def test_the_gpu_speed_study_runs_its_steps_on_any_device(tiny_release):
    run = _study(tiny_release, "study=speed_gpu", *MODELS, "device=cpu", "families=[carn]", "sizes=[32x48]",
                 "precisions=[fp32]", "repeats=1", "layout_size=32x48", "gate_size=64x96", "gate_thresholds=[0,1]",
                 "gate_halos=[8]")
    assert run.returncode == 0, run.stderr[-3000:]
    root = tiny_release / "outputs" / "studies" / "speed_gpu"
    layout = _result(root, "layout/family=carn,precision=fp32")["rows"]
    assert "reference k=0" not in {r["variant"] for r in layout}
    gate = {r["variant"] for r in _result(root, "gate/family=carn")["rows"]}
    assert len([v for v in gate if "skip" in v]) == 2, gate
    assert "## the flat-tile gate at 4K" in (root / "report" / "report.md").read_text()
