"""The gaps of experiments/retrain_budget.sh's runs to the released curve, as one Markdown table.

Usage: python experiments/retrain_budget_report.py RUNS [--run LABEL=RUN ...] [--routed NAME]

For every run folder RUNS/<variant>/<backbone>/ (and each --run, e.g. the whole recipe's) and each split
(val, report), with its training photos, their shrink factors (data.hr_scales) and steps read from the run
itself: the worst gap at equal GFLOPs
measured both ways (pcsr compare's rule), the all-light gap, and the same worst gap for the released model
with only the re-trained classifier and with only the re-trained U_1. ``--routed NAME``: where a run holds
RUN/routed/NAME/ (its U_1-alone stage trained again from its stage 1 by routed_sweep.sh and reported by
routed_report.sh), the re-trained model is that one.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import yaml

from pcsr_lightning.evaluation.compare import curve_points, read_summary, worst_gaps_both_ways
from pcsr_lightning.io.images import list_images

MODELS = ("retrained", "retrained_C_only", "retrained_U1_only")
VARIANT = re.compile(r"^(photos|steps)(\d+)$")


def gaps(released_csv: Path, curves: dict[str, Path | None]) -> dict[str, float | None]:
    """Worst gaps of each model's summary CSV (None: not measured) to the released one, and the re-trained
    model's all-light gap (``all_light``)."""
    released = read_summary(released_csv)
    reference = curve_points(released)
    out: dict[str, float | None] = {"all_light": None}
    for name, path in curves.items():
        if path is None or not path.is_file():
            out[name] = None
            continue
        summary = read_summary(path)
        out[name] = worst_gaps_both_ways(reference, curve_points(summary))["either"]
        if name == "retrained":
            light = [r["psnr"] for r in summary if r["setting"] == "all-light"]
            ref = [r["psnr"] for r in released if r["setting"] == "all-light"]
            out["all_light"] = light[0] - ref[0] if light and ref else None
    return out


def split_curves(run: Path, split: str, routed: str | None) -> tuple[dict[str, Path | None], str]:
    """The summary CSVs of one run's split, and where its re-trained U_1 comes from: the run's own routed
    stage, or (``routed``) the one routed_sweep.sh trained again from its stage 1 as RUN/routed/<routed>/
    (its validation sweep ``retrained.csv``, routed_report.sh's ``report/``; no U_1-only sweep on val)."""
    own = {name: run / split / f"{name}.csv" for name in MODELS}
    again = run / "routed" / routed if routed else None
    if again is None or not (again / "retrained.csv").is_file():
        return own, "its own"
    if split == "val":
        return {**own, "retrained": again / "retrained.csv", "retrained_U1_only": None}, routed
    return {**own, "retrained": again / "report" / "retrained.csv",
            "retrained_U1_only": again / "report" / "retrained_U1_only.csv"}, routed


def runs(root: Path, extra: list[str]) -> list[tuple[str, Path]]:
    """(label, backbone run folder) pairs: the budget runs in a fixed order, then ``extra`` (LABEL=RUN)."""
    found = []
    for variant in sorted(p for p in root.iterdir() if VARIANT.match(p.name)):
        kind, percent = VARIANT.match(variant.name).groups()
        for run in sorted(variant.iterdir()):
            if (run / "report" / "released.csv").is_file():
                found.append(((kind, int(percent)), variant.name, run))
    found.sort(key=lambda item: item[0])
    rows = [(name, run) for _, name, run in found]
    for item in extra:
        label, _, path = item.partition("=")
        if not path:
            raise SystemExit(f"--run takes LABEL=RUN, got {item!r}")
        rows.append((label, Path(path)))
    return rows


def photos_and_steps(run: Path) -> tuple[str, str, str]:
    """How many photos the run trained on (its data.train.path, as the training read it), the factors they
    were shrunk by ('1': as stored) and its steps (stage 1 + U_1 alone), from the run's own config and
    manifest."""
    config = yaml.safe_load((run / ".hydra" / "config.yaml").read_text(encoding="utf-8"))
    photos = len(list_images(config["data"]["train"]["path"], on_skip=None))
    factors = config["data"].get("hr_scales") or [1]
    stages = json.loads((run / "manifest.json").read_text(encoding="utf-8"))["stages"]
    steps = {s["name"]: s["config"].get("steps") for s in stages}
    return (str(photos), ", ".join(f"{f:g}" for f in factors),
            " + ".join(f"{steps.get(n) or 0:,}" for n in ("stage1", "stage1_routed")))


def trained_seconds(run: Path) -> str:
    """The training time retrain_classifier.sh recorded (the last call's), or '' when it did not."""
    log = run / "trained.txt"
    if not log.is_file():
        return ""
    times = re.findall(r"trained in (\d+) s", log.read_text(encoding="utf-8"))
    return times[-1] if times else ""


def fmt(value: float | None) -> str:
    return "" if value is None else f"{value:+.3f}"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path)
    parser.add_argument("--run", action="append", default=[], metavar="LABEL=RUN",
                        help="another retrain_classifier.sh run folder (<RUNS>/<backbone>), e.g. the whole recipe's")
    parser.add_argument("--routed", help="take U_1 from RUN/routed/<ROUTED>/ where a run has it (routed_sweep.sh)")
    args = parser.parse_args(argv)
    print("| run | backbone | training photos | shrunk by | steps (stage 1 + U_1 alone) | trained (s) | U_1 alone from "
          "| split | re-trained: worst gap | all-light gap | re-trained C only | re-trained U_1 only |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, run in runs(args.runs, args.run):
        photos, factors, steps = photos_and_steps(run)
        for split in ("val", "report"):
            if not (run / split / "released.csv").is_file():
                continue
            curves, source = split_curves(run, split, args.routed)
            g = gaps(run / split / "released.csv", curves)
            print(f"| {name} | {run.name} | {photos} | {factors} | {steps} | {trained_seconds(run)} | {source} "
                  f"| {split} | {fmt(g['retrained'])} | {fmt(g['all_light'])} | {fmt(g['retrained_C_only'])} "
                  f"| {fmt(g['retrained_U1_only'])} |")


if __name__ == "__main__":
    main()
