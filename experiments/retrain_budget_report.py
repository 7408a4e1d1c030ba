"""The gaps of experiments/retrain_budget.sh's runs to the released curve, as one Markdown table.

Usage: python experiments/retrain_budget_report.py RUNS [--full RUN] [--photos N] [--steps STAGE ROUTED]

For every run folder RUNS/<variant>/<backbone>/ (and the whole recipe's run, --full) and each split (val,
report): the worst gap at equal GFLOPs measured both ways (pcsr compare's rule), the all-light gap, and the
same worst gap for the released model with only the re-trained classifier and with only the re-trained U_1.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from pcsr_lightning.evaluation.compare import curve_points, read_summary, worst_gaps_both_ways

MODELS = ("retrained", "retrained_C_only", "retrained_U1_only")
VARIANT = re.compile(r"^(photos|steps)(\d+)$")


def gaps(split: Path) -> dict[str, float | None]:
    """Worst gaps of the three models in one split folder, and the re-trained model's all-light gap."""
    released = read_summary(split / "released.csv")
    reference = curve_points(released)
    out = {}
    for name in MODELS:
        summary = read_summary(split / f"{name}.csv")
        out[name] = worst_gaps_both_ways(reference, curve_points(summary))["either"]
        if name == "retrained":
            light = [r["psnr"] for r in summary if r["setting"] == "all-light"]
            ref = [r["psnr"] for r in released if r["setting"] == "all-light"]
            out["all_light"] = light[0] - ref[0] if light and ref else None
    return out


def runs(root: Path, full: Path | None) -> list[tuple[str, Path]]:
    """(variant, backbone run folder) pairs: the budget runs in a fixed order, then the whole recipe."""
    found = []
    for variant in sorted(p for p in root.iterdir() if VARIANT.match(p.name)):
        kind, percent = VARIANT.match(variant.name).groups()
        for run in sorted(variant.iterdir()):
            if (run / "report" / "released.csv").is_file():
                found.append(((kind, int(percent)), variant.name, run))
    found.sort(key=lambda item: item[0])
    rows = [(name, run) for _, name, run in found]
    if full is not None:
        rows.append(("full", full))
    return rows


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
    parser.add_argument("--full", type=Path, help="the whole recipe's retrain_classifier.sh run (<RUNS>/<backbone>)")
    parser.add_argument("--photos", type=int, help="training photos of the whole folder (the photos column)")
    parser.add_argument("--steps", type=int, nargs=2, metavar=("STAGE", "ROUTED"), help="the recipe's steps")
    args = parser.parse_args(argv)
    print("| run | backbone | training photos | steps (stage 1 + U_1 alone) | trained (s) | split "
          "| re-trained: worst gap | all-light gap | re-trained C only | re-trained U_1 only |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, run in runs(args.runs, args.full):
        match = VARIANT.match(name)
        kind, percent = match.groups() if match else ("full", "100")
        photos = steps = "all"
        if args.photos and kind == "photos":
            photos = str(len(range(0, args.photos, 100 // int(percent))))
        elif args.photos:
            photos = str(args.photos)
        if args.steps:
            share = int(percent) if kind == "steps" else 100
            steps = " + ".join(f"{s * share // 100:,}" for s in args.steps)
        for split in ("val", "report"):
            if not (run / split / "released.csv").is_file():
                continue
            g = gaps(run / split)
            print(f"| {name} | {run.name} | {photos} | {steps} | {trained_seconds(run)} | {split} "
                  f"| {fmt(g['retrained'])} | {fmt(g['all_light'])} | {fmt(g['retrained_C_only'])} "
                  f"| {fmt(g['retrained_U1_only'])} |")


if __name__ == "__main__":
    main()
