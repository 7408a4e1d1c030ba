"""What the gate's skipped tiles are filled with: bicubic against a 5x5 linear filter fitted by least squares.

The gate fills a skipped tile with the bicubic upscale of the LR, and on clean photos that fill is what
costs the dB (each skipped tile loses PCSR's residual there). A linear filter on each LR pixel's 5x5
neighbourhood, one set of weights per HR phase (16 at x4, the same for the three channels, 416 weights),
fitted by least squares to HR minus bicubic on flat LR pixels, is measured here two ways:

- ``trained``: fitted on other photos; each photo is reported with the filter fitted on every photo but
  itself (leave one out: the normal equations are summed per photo, so dropping one costs nothing);
- ``self``: fitted on the photo's own LR against its own x4 downscale (needs no other photo and no HR).

The filter and its fit are the package's (``models.fill.LinearFill``, ``training.fill.FillStatistics``:
what ``pcsr fit-fill`` writes into a model). For each photo (HR centre crop, LR as ``pcsr eval`` makes
it) and threshold, the gate runs for real (exact halo, k = 0): its output with the skipped pixels
refilled by each filter is what a gate with that fill would give, since the gate's skipped pixels are
exactly the bicubic fill and the others do not depend on it. Prints dB below PCSR per photo and the
summary per fill: worst and mean loss, photos over the budget.

    python experiments/skip_flat_fill.py --ckpt CKPT --hr-size 1088x1920 PHOTO ... [--eval-hr-size 2160x3824
        --eval PHOTO ...] [--json OUT]

Without ``--eval`` every photo is reported (leave one out); with it, the ``--eval`` photos are reported at
``--eval-hr-size`` with the filter fitted on all the positional photos (none of which may be an eval photo).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

import pcsr_lightning
from pcsr_lightning.training.fill import FillStatistics

sys.path.insert(0, str(Path(__file__).resolve().parent))
from skip_flat_selfcal import check_hr_size, gate_losses, hr_crop, lr_of  # noqa: E402  (the same crops, LR, runs)

SCALE = 4
THRESHOLDS = (0.045, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)
FILLS = ("bicubic", "trained", "self")


def bicubic(lr: torch.Tensor) -> torch.Tensor:
    """The gate's own fill (torch's cubic kernel, a = -0.75)."""
    return F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)


def statistics(lr: torch.Tensor, hr: torch.Tensor) -> FillStatistics:
    """The fill's normal equations over the flat LR pixels of one pair."""
    stats = FillStatistics(SCALE)
    stats.add(lr, hr)
    return stats


def fitted_fill(stats: FillStatistics, lr: torch.Tensor) -> torch.Tensor:
    """The fill fitted on ``stats``, applied to ``lr``; bicubic where there was no flat pixel to fit on."""
    with torch.no_grad():
        return stats.solve()(lr) if stats.pixels else bicubic(lr)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+", type=Path,
                    help="photos the filter is fitted on (and reported, without --eval)")
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--hr-size", default="1088x1920", help="HxW crop of the fitting photos, multiples of 16")
    ap.add_argument("--eval", nargs="*", type=Path, default=[], help="photos to report instead (never fitted on)")
    ap.add_argument("--eval-hr-size", default=None, help="HxW crop of the --eval photos (default --hr-size)")
    ap.add_argument("--thresholds", nargs="+", type=float, default=list(THRESHOLDS),
                    help="gate thresholds (CARN's range by default; FSRCNN-PCSR's run higher, e.g. 0.2-0.6)")
    ap.add_argument("--budget", type=float, default=0.05, help="dB below PCSR at k = 0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    sizes = {"fit": check_hr_size(ap, args.hr_size), "eval": check_hr_size(ap, args.eval_hr_size or args.hr_size)}
    overlap = {p.resolve() for p in args.photos} & {p.resolve() for p in args.eval}
    if overlap:
        ap.error(f"--eval photos may not be fitted on: {sorted(p.name for p in overlap)}")
    torch.set_num_threads(args.threads)
    model = pcsr_lightning.load(args.ckpt, device="cpu")

    def pair(path, size):
        hr = hr_crop(path, *size)
        if hr is None:
            print(f"skipping {path.name}: smaller than {size[0]}x{size[1]}")
        return None if hr is None else (hr, lr_of(hr))

    fitted = {}
    for path in args.photos:
        p = pair(path, sizes["fit"])
        if p is not None:
            fitted[path.stem] = (p, statistics(p[1], p[0]))
    if not fitted:
        ap.error("no fitting photo holds the HR size")

    if args.eval:
        reported = [(path.stem, pair(path, sizes["eval"])) for path in args.eval]
        reported = [(name, p) for name, p in reported if p is not None]
    else:
        reported = [(name, p) for name, (p, _) in fitted.items()]
    photos = []
    for name, (hr, lr) in reported:
        others = FillStatistics.merged(stats for other, (_, stats) in fitted.items()  # leave this photo out
                                       if args.eval or other != name)
        fills = {"bicubic": bicubic(lr), "trained": fitted_fill(others, lr),
                 "self": fitted_fill(statistics(lr_of(lr), lr), lr)}
        rows = gate_losses(model, lr, hr, args.thresholds, fills)
        photos.append({"name": name, "rows": rows})
        print(f"{name}: " + ", ".join(f"{r['threshold']}: " + "/".join(f"{r[f]:+.3f}" for f in FILLS) for r in rows),
              flush=True)

    heads = " | ".join(f"{f}: worst dB | mean | over {args.budget}" for f in FILLS)
    print(f"\n| threshold | mean skipped | {heads} |")
    print("| --- | --- |" + " --- | --- | --- |" * len(FILLS))
    summary = []
    for i, t in enumerate(args.thresholds):
        rows = [p["rows"][i] for p in photos]
        entry = {"threshold": t, "skipped": float(np.mean([r["skipped"] for r in rows]))}
        cells = []
        for f in FILLS:
            vals = [r[f] for r in rows]
            entry[f] = {"worst": max(vals), "mean": float(np.mean(vals)), "over": sum(v > args.budget for v in vals)}
            cells.append(f"{max(vals):+.3f} | {np.mean(vals):+.3f} | {entry[f]['over']} of {len(rows)}")
        summary.append(entry)
        print(f"| {t} | {entry['skipped']:.3f} | " + " | ".join(cells) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sizes": sizes, "budget": args.budget, "photos": photos,
                                         "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
