"""What the gate's skipped tiles are filled with: bicubic against a 5x5 linear filter fitted by least squares.

The gate fills a skipped tile with the bicubic upscale of the LR, and on clean photos that fill is what
costs the dB (each skipped tile loses PCSR's residual there). A linear filter on each LR pixel's 5x5
neighbourhood, one set of weights per HR phase (16 at x4, the same for the three channels, 416 weights),
fitted by least squares to HR minus bicubic on flat LR pixels, is measured here two ways:

- ``trained``: fitted on other photos; each photo is reported with the filter fitted on every photo but
  itself (leave one out: the normal equations are summed per photo, so dropping one costs nothing);
- ``self``: fitted on the photo's own LR against its own x4 downscale (needs no other photo and no HR).

For each photo (HR centre crop, LR as ``pcsr eval`` makes it) and threshold, the gate runs for real (exact
halo, k = 0): its output with the skipped pixels refilled by each filter is what a gate with that fill
would give, since the gate's skipped pixels are exactly the bicubic fill and the others do not depend on
it. Prints dB below PCSR per photo and the summary per fill: worst and mean loss, photos over the budget.

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
from pcsr_lightning.inference.gate import flatness_scores

sys.path.insert(0, str(Path(__file__).resolve().parent))
from skip_flat_selfcal import check_hr_size, gate_losses, hr_crop, lr_of  # noqa: E402  (the same crops, LR, runs)

SCALE = 4
RADIUS = 2  # a 5x5 LR neighbourhood
FIT_BELOW = 0.2  # LR pixels fitted: max |Laplacian| over their 5x5 neighbourhood below this (flat ones)
RIDGE = 1e-6
THRESHOLDS = (0.045, 0.06, 0.08, 0.1, 0.15, 0.2, 0.3)
FILLS = ("bicubic", "trained", "self")


def bicubic(lr: torch.Tensor) -> torch.Tensor:
    """The gate's own fill (torch's cubic kernel, a = -0.75)."""
    return F.interpolate(lr, scale_factor=SCALE, mode="bicubic", align_corners=False)


def neighbourhoods(lr: torch.Tensor) -> torch.Tensor:
    """(1,3,h,w) -> (3*h*w, 26): each pixel's 5x5 neighbourhood (replicate padding) and a constant 1."""
    k = 2 * RADIUS + 1
    patches = F.unfold(F.pad(lr, (RADIUS,) * 4, mode="replicate").transpose(0, 1), k)  # (3, k*k, h*w)
    x = patches.permute(0, 2, 1).reshape(-1, k * k).double()
    return torch.cat([x, x.new_ones(x.shape[0], 1)], 1)


def phases(hr: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(1,3,4h,4w) -> (3*h*w, 16): the HR pixels of each LR pixel, by phase."""
    return hr.reshape(3, h, SCALE, w, SCALE).permute(0, 1, 3, 2, 4).reshape(-1, SCALE * SCALE).double()


def normal_equations(lr: torch.Tensor, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(X'X, X'Y) over the flat LR pixels of one pair, Y = HR - bicubic(LR)."""
    _, _, h, w = lr.shape
    flat = (flatness_scores(lr, 1)[0] < FIT_BELOW).flatten().repeat(3)
    x = neighbourhoods(lr)[flat]
    y = phases(hr - bicubic(lr), h, w)[flat]
    return x.T @ x, x.T @ y


def solve(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.linalg.solve(a + RIDGE * torch.eye(a.shape[0], dtype=a.dtype), b)


def linear_fill(lr: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """bicubic(LR) + the filter's residual, (1,3,4h,4w)."""
    _, _, h, w = lr.shape
    res = (neighbourhoods(lr) @ weights).float().view(3, h, w, SCALE, SCALE).permute(0, 1, 3, 2, 4)
    return bicubic(lr) + res.reshape(1, 3, h * SCALE, w * SCALE)


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
            fitted[path.stem] = (p, normal_equations(p[1], p[0]))
    if not fitted:
        ap.error("no fitting photo holds the HR size")
    total_a = sum(eq[0] for _, eq in fitted.values())
    total_b = sum(eq[1] for _, eq in fitted.values())

    if args.eval:
        reported = [(path.stem, pair(path, sizes["eval"])) for path in args.eval]
        reported = [(name, p) for name, p in reported if p is not None]
    else:
        reported = [(name, p) for name, (p, _) in fitted.items()]
    photos = []
    for name, (hr, lr) in reported:
        a, b = total_a, total_b
        if name in fitted and not args.eval:  # leave this photo out of its own filter
            a, b = a - fitted[name][1][0], b - fitted[name][1][1]
        fills = {"bicubic": bicubic(lr), "trained": linear_fill(lr, solve(a, b)),
                 "self": linear_fill(lr, solve(*normal_equations(lr_of(lr), lr)))}
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
