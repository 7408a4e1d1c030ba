"""Can each photo choose its own gate threshold? A no-reference rule tried and measured.

A fixed ``--skip-flat`` threshold loses a different number of dB on each photo (a clean photo loses more
per bicubic tile), so the threshold that is safe on every photo of a set is far below what most photos
allow. The rule tried here needs no HR image: downscale the LR image once more by the model's scale, run
PCSR on that small image with the gate at each threshold of a grid, take the LR image as its ground truth,
and pick the largest threshold whose loss there stays within ``--budget`` dB (optionally times a safety
factor); the full-size image is then upscaled at that threshold. It costs about 1/16 of a PCSR run.

For each photo (an HR centre crop, LR by MATLAB-style bicubic) the script prints the threshold each rule
picks and what the full-size image loses at it (the real gate, exact halo, k = 0, RGB PSNR with the
scale's border, the LR as `pcsr eval` makes it), next to the oracle (the largest grid threshold within
the budget on the full-size image itself, which needs the HR image), and a summary per rule: worst and
mean loss, mean skipped share.

    python experiments/skip_flat_selfcal.py --ckpt CKPT --hr-size 1088x1920 PHOTO [PHOTO ...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

import pcsr_lightning
from pcsr_lightning.bench.inputs import parse_size
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.io.images import read_image
from pcsr_lightning.measure.metrics import psnr

sys.path.insert(0, str(Path(__file__).resolve().parent))
from skip_flat_photos import centre_crop, fitting  # noqa: E402  (the crops of the other gate experiments)

SCALE = 4
GRID = (0.02, 0.03, 0.04, 0.045, 0.05, 0.06, 0.08, 0.1, 0.12, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5)
FIXED = (0.045, 0.06, 0.08, 0.1)  # each in GRID
FACTORS = (1.0, 0.75, 0.5)


def hr_crop(path: Path, h: int, w: int) -> torch.Tensor | None:
    """(1,3,h,w) centre crop in [0, 1], the photo turned a quarter turn if it only fits so; None if it
    does not fit either way."""
    img = fitting(read_image(path), (h, w), portrait=True)
    return None if img is None else centre_crop(img, (h, w))[None]


def lr_of(hr: torch.Tensor) -> torch.Tensor:
    """The LR the commands evaluate on (``pcsr eval``'s rule, float, not rounded)."""
    return downscale(hr, SCALE)


def gate_losses(model, lr: torch.Tensor, hr: torch.Tensor, thresholds, fills=None) -> list[dict]:
    """Per threshold (k = 0, the gate's exact halo): the skipped share and dB below PCSR of the gate's
    output (``gate``) and, for each of ``fills`` ({name: (1,3,H,W) image}), of that output with the fill
    put in the skipped pixels."""
    with torch.inference_mode():
        sr, _ = model.super_resolve(lr, float(SCALE), RoutingSpec.build(k=0.0))
        base = psnr(sr.clamp(0, 1), hr, SCALE)
        rows = []
        for t in thresholds:
            gated, classes = model.super_resolve(lr, float(SCALE), RoutingSpec.build(k=0.0, skip_flat=t))
            skipped = (classes == model.num_classes)[:, None]
            row = {"threshold": t, "skipped": float(skipped.float().mean()),
                   "gate": base - psnr(gated.clamp(0, 1), hr, SCALE)}
            for name, fill in (fills or {}).items():
                row[name] = base - psnr(torch.where(skipped, fill, gated).clamp(0, 1), hr, SCALE)
            rows.append(row)
    return rows


def loss_curve(model, lr: torch.Tensor, hr: torch.Tensor) -> list[tuple[float, float, float]]:
    """(threshold, dB below PCSR, skipped share) of the gate over ``GRID``."""
    return [(r["threshold"], r["gate"], r["skipped"]) for r in gate_losses(model, lr, hr, GRID)]


def check_hr_size(ap: argparse.ArgumentParser, text: str) -> tuple[int, int]:
    """``parse_size``, both sides multiples of SCALE^2 (the LR is downscaled once more); else ``ap.error``."""
    try:
        h, w = parse_size(text)
    except ValueError as err:
        ap.error(str(err))
    if h % (SCALE * SCALE) or w % (SCALE * SCALE):
        ap.error(f"HR size {text}: both sides must be multiples of {SCALE * SCALE}")
    return h, w


def largest_within(curve, budget: float) -> float:
    ok = [t for t, loss, _ in curve if loss <= budget]
    return max(ok) if ok else 0.0


def at(curve, threshold: float) -> tuple[float, float]:
    """(loss, skipped share) at the largest grid threshold <= ``threshold`` (none: nothing skipped)."""
    below = [(loss, share) for t, loss, share in curve if t <= threshold + 1e-12]
    return below[-1] if below else (0.0, 0.0)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--hr-size", default="1088x1920", help="HxW, both multiples of 16 (x4, then x4 again)")
    ap.add_argument("--budget", type=float, default=0.05, help="dB below PCSR at k = 0")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    h, w = check_hr_size(ap, args.hr_size)
    torch.set_num_threads(args.threads)
    model = pcsr_lightning.load(args.ckpt, device="cpu")

    photos = []
    for path in args.photos:
        hr = hr_crop(path, h, w)
        if hr is None:
            print(f"skipping {path.name}: smaller than {h}x{w}")
            continue
        lr = lr_of(hr)
        full, small = loss_curve(model, lr, hr), loss_curve(model, lr_of(lr), lr)
        row = {"name": path.stem, "full": full, "small": small, "oracle": largest_within(full, args.budget),
               "self": largest_within(small, args.budget)}
        photos.append(row)
        print(f"{path.stem}: oracle {row['oracle']}, self-calibrated {row['self']}", flush=True)

    rules = {f"fixed {t}": (lambda r, t=t: t) for t in FIXED}
    rules |= {f"self-calibrated x{f}": (lambda r, f=f: f * r["self"]) for f in FACTORS}
    rules["oracle (needs the HR image)"] = lambda r: r["oracle"]
    print("\n| photo | oracle | self-calibrated | loss at it | " + " | ".join(f"fixed {t}" for t in FIXED) + " |")
    print("| --- | --- | --- | --- |" + " --- |" * len(FIXED))
    for r in photos:
        fixed = " | ".join(f"{at(r['full'], t)[0]:+.3f}" for t in FIXED)
        print(f"| {r['name']} | {r['oracle']} | {r['self']} | {at(r['full'], r['self'])[0]:+.3f} | {fixed} |")
    print(f"\n| rule (budget {args.budget} dB) | worst dB below PCSR | mean | photos over the budget | mean skipped |")
    print("| --- | --- | --- | --- | --- |")
    summary = {}
    for name, rule in rules.items():
        res = [at(r["full"], rule(r)) for r in photos]
        losses, shares = [x[0] for x in res], [x[1] for x in res]
        summary[name] = {"worst": max(losses), "mean": float(np.mean(losses)),
                         "over": sum(x > args.budget for x in losses), "skipped": float(np.mean(shares))}
        s = summary[name]
        print(f"| {name} | {s['worst']:.3f} | {s['mean']:.3f} | {s['over']} of {len(photos)} | {s['skipped']:.3f} |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"hr_size": [h, w], "budget": args.budget, "photos": photos,
                                         "rules": summary}, indent=1))


if __name__ == "__main__":
    main()
