"""The loss budget's error level: how PCSR's error on a photo compares with its error on the photo's LR
downscaled once more (what ``inference.budget.self_error`` measures from the LR alone).

For each photo (HR as given, LR by ``make_pair``'s MATLAB-style bicubic) the script prints the MSE of PCSR at
k = 0 against the HR (the PSNR protocol's: clamped, rounded to levels, the scale's border shaved) and
the self-calibration MSE, their ratio, and the ratio's quantiles over the photos. ``SELF_ERROR_SHARE`` is a
low quantile of this ratio on the fitting photos (the photo pool's train split); photos the budget is
reported on must not be among them.

    python experiments/skip_budget_calibrate.py --ckpt CKPT PHOTO_OR_FOLDER [...] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import pcsr_lightning
from pcsr_lightning.data.bicubic import make_pair
from pcsr_lightning.inference.budget import self_error
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.io.images import list_images, read_image
from pcsr_lightning.measure.metrics import psnr

SCALE = 4


def photos_of(paths: list[Path]) -> list[Path]:
    return [p for path in paths for p in (list_images(path) if path.is_dir() else [path])]


def mse_of_psnr(db: float) -> float:
    """The [0, 1]-range MSE behind a PSNR (peak 255 levels)."""
    return 10 ** (-db / 10)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="+", type=Path)
    ap.add_argument("--ckpt", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = pcsr_lightning.load(args.ckpt, device="cpu")
    rows = []
    with torch.inference_mode():
        for path in photos_of(args.photos):
            hr, lr = make_pair(read_image(path), SCALE)
            sr, _ = model.super_resolve(lr[None], float(SCALE), RoutingSpec())
            true = mse_of_psnr(psnr(sr[0].clamp(0, 1), hr, SCALE))
            own, _ = self_error(model.network, lr[None], SCALE, 0.0)
            rows.append({"photo": path.stem, "size": list(hr.shape[-2:]), "mse": true, "self": own[0],
                         "ratio": true / own[0]})
            print(f"| {path.stem} | {hr.shape[-2]}x{hr.shape[-1]} | {10 * np.log10(1 / true):.2f} | "
                  f"{10 * np.log10(1 / own[0]):.2f} | {true / own[0]:.3f} |", flush=True)
    ratios = np.array([r["ratio"] for r in rows])
    quantiles = {q: float(np.quantile(ratios, q)) for q in (0.0, 0.05, 0.1, 0.25, 0.5)}
    print("ratio quantiles: " + ", ".join(f"{q:g}: {v:.3f}" for q, v in quantiles.items()))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"photos": rows, "quantiles": quantiles}, indent=1))


if __name__ == "__main__":
    main()
