"""experiments/retrain_budget_report.py: the gaps of each budget run, read from its summary CSVs."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from experiment_scripts import load_script

report = load_script("retrain_budget_report")
RELEASED = [("all-light", "", 1.0, 30.0), ("k", "0", 2.0, 31.0), ("all-heavy", "", 3.0, 32.0)]


def write_summary(path, points):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["model", "setting", "k", "images", "psnr", "heavy_share", "gflops_paper"])
        for setting, k, gflops, psnr in points:
            w.writerow(["pcsr", setting, k, 2, psnr, 0.5, gflops])


def dropped(drop):
    """The released curve with its all-light end ``drop`` dB lower."""
    return [("all-light", "", 1.0, 30.0 - drop), *RELEASED[1:]]


def fake_run(run, light_drop, u1_drop, photos=2, steps=(100, 30), hr_scales=None):
    """A run folder whose re-trained model is ``light_drop`` dB below the release at the all-light end
    (and equal at k = 0 and all-heavy); the U_1-only model ``u1_drop`` there; the C-only model equal.
    It trained on ``photos`` images (shrunk by ``hr_scales``) for ``steps`` (stage 1, U_1 alone)."""
    for split in ("val", "report"):
        write_summary(run / split / "released.csv", RELEASED)
        write_summary(run / split / "retrained_C_only.csv", RELEASED)
        write_summary(run / split / "retrained.csv", dropped(light_drop))
        write_summary(run / split / "retrained_U1_only.csv", dropped(u1_drop))
    train = run / "photos"
    train.mkdir()
    for i in range(photos):
        (train / f"p{i}.png").write_bytes(b"x")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "config.yaml").write_text(yaml.safe_dump({"data": {"train": {"path": str(train)},
                                                                                  "hr_scales": hr_scales}}))
    stages = [{"name": "stage0", "config": {}}, {"name": "stage1", "config": {"steps": steps[0]}},
              {"name": "stage1_routed", "config": {"steps": steps[1]}}]
    (run / "manifest.json").write_text(json.dumps({"stages": stages}))


def test_gaps_are_the_worst_at_equal_gflops_and_the_all_light_gap(tmp_path):
    fake_run(tmp_path / "run", 0.25, 0.4)
    split = tmp_path / "run" / "report"
    gaps = report.gaps(split / "released.csv", {m: split / f"{m}.csv" for m in report.MODELS})
    assert gaps["retrained"] == pytest.approx(-0.25) and gaps["all_light"] == pytest.approx(-0.25)
    assert gaps["retrained_U1_only"] == pytest.approx(-0.4) and gaps["retrained_C_only"] == pytest.approx(0.0)


def table(capsys):
    return [[cell.strip("| ") for cell in line.split(" | ")] for line in capsys.readouterr().out.splitlines()[2:]]


def test_the_table_has_a_row_per_run_and_split_in_budget_order(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "steps50" / "fsrcnn", 0.3, 0.3, photos=8, steps=(50, 15))
    fake_run(runs / "photos25" / "fsrcnn", 0.5, 0.5, photos=2)
    fake_run(runs / "photos50" / "fsrcnn", 0.4, 0.4, photos=4)
    (runs / "photos50" / "fsrcnn" / "trained.txt").write_text("fsrcnn: ..., trained in 1234 s (wall clock)\n")
    fake_run(tmp_path / "full" / "fsrcnn", 0.2, 0.2, photos=8, steps=(17000, 5000), hr_scales=[1, 0.75, 0.5])
    (runs / "photos").mkdir()  # the subsets' folder is no run
    report.main([str(runs), "--run", f"full={tmp_path / 'full' / 'fsrcnn'}"])
    rows = table(capsys)
    assert [(r[0], r[7]) for r in rows] == [
        (name, split) for name in ("photos25", "photos50", "steps50", "full") for split in ("val", "report")]
    assert [r[2] for r in rows[::2]] == ["2", "4", "8", "8"]
    assert [r[3] for r in rows[::2]] == ["1", "1", "1", "1, 0.75, 0.5"]
    assert [r[4] for r in rows[::2]] == ["100 + 30", "100 + 30", "50 + 15", "17,000 + 5,000"]
    assert [r[5] for r in rows[::2]] == ["", "1234", "", ""]
    assert [r[8] for r in rows[::2]] == ["-0.500", "-0.400", "-0.300", "-0.200"]


def test_a_routed_stage_trained_again_replaces_the_runs_own_where_it_exists(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "photos25" / "fsrcnn", 0.5, 0.5)
    fake_run(runs / "steps25" / "fsrcnn", 0.3, 0.3)
    again = runs / "photos25" / "fsrcnn" / "routed" / "skip0_p0.5"
    write_summary(again / "retrained.csv", dropped(0.1))  # validation sweep (routed_sweep.sh)
    write_summary(again / "report" / "retrained.csv", dropped(0.15))  # routed_report.sh
    write_summary(again / "report" / "retrained_U1_only.csv", dropped(0.12))
    report.main([str(runs), "--routed", "skip0_p0.5"])
    rows = table(capsys)
    assert [(r[0], r[6], r[7], r[8], r[11]) for r in rows] == [
        ("photos25", "skip0_p0.5", "val", "-0.100", ""), ("photos25", "skip0_p0.5", "report", "-0.150", "-0.120"),
        ("steps25", "its own", "val", "-0.300", "-0.300"), ("steps25", "its own", "report", "-0.300", "-0.300")]
    assert [r[10] for r in rows] == ["+0.000"] * 4  # the classifier is the run's own either way
