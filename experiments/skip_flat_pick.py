"""The flat-tile gate's threshold chosen on a validation summary: the largest whose mean PSNR at k = 0 stays
within ``--budget`` dB of PCSR's (the plain k = 0 row of the same summary). Prints the threshold alone.
Usage: python experiments/skip_flat_pick.py VAL_SUMMARY.csv [--budget 0.05]
       python experiments/skip_flat_pick.py PER_IMAGE.csv --leave-out IMAGE [--budget 0.05]
The second form reads ``pcsr eval --out``'s per-image rows and chooses on the mean over every image but
IMAGE (its file name, or its stem): where photos are few, each is reported at a threshold the others chose.
"""

import argparse
import csv
import statistics
import sys
from pathlib import Path

from pcsr_lightning.evaluation.compare import read_summary

MEANS = ("psnr", "skipped_share", "gflops_paper")  # the columns the choice and its log need


def number(text):
    return None if text in ("", None) else float(text)


def rows_without(path, leave_out: str) -> list[dict]:
    """Summary-like rows (one per setting, ``MEANS`` averaged) over the images of a per-image CSV except
    ``leave_out``; refuses an image that is not in the file."""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["image"] != "mean"]
    images = {r["image"] for r in rows}
    if leave_out not in images and leave_out not in {Path(i).stem for i in images}:
        raise SystemExit(f"{path} has no image {leave_out!r} (images: {', '.join(sorted(images))})")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        if leave_out not in (r["image"], Path(r["image"]).stem):
            groups.setdefault((r["model"], r["setting"], r["k"], r["skip_flat"]), []).append(r)
    if not groups:
        raise SystemExit(f"{path}: no image left once {leave_out} is left out")
    return [{"model": m, "setting": s, "k": number(k), "skip_flat": number(t),
             **{c: statistics.fmean(number(r[c]) or 0.0 for r in group) for c in MEANS}}
            for (m, s, k, t), group in groups.items()]


def pick(rows: list[dict], budget: float, k: float, source: str) -> float:
    """The largest threshold whose PSNR stays within ``budget`` dB of the plain row at ``k``."""
    rows = [r for r in rows if r["setting"] == "k" and r["k"] == k]
    plain = next(r for r in rows if r["skip_flat"] is None)
    ok = []
    for r in sorted((r for r in rows if r["skip_flat"] is not None), key=lambda r: r["skip_flat"]):
        loss = plain["psnr"] - r["psnr"]
        print(f"threshold {r['skip_flat']:g}: {loss:+.4f} dB below PCSR, skipped {r['skipped_share']:.3f}, "
              f"GFLOPs {r['gflops_paper']:.2f} vs {plain['gflops_paper']:.2f}", file=sys.stderr)
        if loss <= budget:
            ok.append(r["skip_flat"])
    if not ok:
        raise SystemExit(f"no threshold of {source} stays within {budget} dB")
    return max(ok)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary", help="pcsr eval --summary CSV (or --out CSV with --leave-out)")
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--k", type=float, default=0.0)
    parser.add_argument("--leave-out", help="choose on every image of a per-image CSV but this one")
    args = parser.parse_args()
    if args.leave_out:
        rows, source = rows_without(args.summary, args.leave_out), f"{args.summary} without {args.leave_out}"
    else:
        rows, source = read_summary(args.summary), args.summary
    print(f"{pick(rows, args.budget, args.k, source):g}")


if __name__ == "__main__":
    main()
