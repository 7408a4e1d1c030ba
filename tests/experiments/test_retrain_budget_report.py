"""experiments/retrain_budget_report.py: the gaps of each budget run, read from its summary CSVs."""

from __future__ import annotations

import csv

import pytest

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


def fake_run(run, light_drop, u1_drop):
    """A run folder whose re-trained model is ``light_drop`` dB below the release at the all-light end
    (and equal at k = 0 and all-heavy); the U_1-only model ``u1_drop`` there; the C-only model equal."""
    for split in ("val", "report"):
        write_summary(run / split / "released.csv", RELEASED)
        write_summary(run / split / "retrained_C_only.csv", RELEASED)
        for name, drop in (("retrained", light_drop), ("retrained_U1_only", u1_drop)):
            write_summary(run / split / f"{name}.csv", [("all-light", "", 1.0, 30.0 - drop), *RELEASED[1:]])


def test_gaps_are_the_worst_at_equal_gflops_and_the_all_light_gap(tmp_path):
    fake_run(tmp_path / "run", 0.25, 0.4)
    gaps = report.gaps(tmp_path / "run" / "report")
    assert gaps["retrained"] == pytest.approx(-0.25) and gaps["all_light"] == pytest.approx(-0.25)
    assert gaps["retrained_U1_only"] == pytest.approx(-0.4) and gaps["retrained_C_only"] == pytest.approx(0.0)


def test_the_table_has_a_row_per_run_and_split_in_budget_order(tmp_path, capsys):
    runs = tmp_path / "runs"
    fake_run(runs / "steps50" / "fsrcnn", 0.3, 0.3)
    fake_run(runs / "photos25" / "fsrcnn", 0.5, 0.5)
    fake_run(runs / "photos50" / "fsrcnn", 0.4, 0.4)
    (runs / "photos50" / "fsrcnn" / "trained.txt").write_text("fsrcnn: ..., trained in 1234 s (wall clock)\n")
    fake_run(tmp_path / "full" / "fsrcnn", 0.2, 0.2)
    (runs / "photos").mkdir()  # the subsets' folder is no run
    report.main([str(runs), "--full", str(tmp_path / "full" / "fsrcnn"), "--photos", "30", "--steps", "17000", "5000"])
    rows = [line.split(" | ") for line in capsys.readouterr().out.splitlines()[2:]]
    assert [(r[0].lstrip("| "), r[5]) for r in rows] == [
        (name, split) for name in ("photos25", "photos50", "steps50", "full") for split in ("val", "report")]
    assert [r[2] for r in rows[::2]] == ["8", "15", "30", "30"]  # every 4th, every 2nd of 30 photos, all
    assert [r[3] for r in rows[::2]] == ["17,000 + 5,000"] * 2 + ["8,500 + 2,500", "17,000 + 5,000"]
    assert [r[4] for r in rows[::2]] == ["", "1234", "", ""]
    assert [r[6] for r in rows[::2]] == ["-0.500", "-0.400", "-0.300", "-0.200"]
