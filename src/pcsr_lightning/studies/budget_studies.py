"""The loss budget's error level, measured as a study step: per photo, PCSR's MSE at k = 0 against the HR
beside the self-calibration MSE (PCSR on the LR's own x4 downscale against the LR, what
``inference.budget.self_error`` measures from the LR alone) and their ratio. ``SELF_ERROR_SHARE`` is a low
quantile of this ratio on the fitting photos (the pool's train split), so this runs on the train role."""

from __future__ import annotations

import numpy as np
import torch

from pcsr_lightning.data.bicubic import make_pair
from pcsr_lightning.inference.budget import self_error
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import load
from pcsr_lightning.io.images import list_images, read_image
from pcsr_lightning.measure.metrics import psnr
from pcsr_lightning.studies.context import Context, Outcome

QUANTILES = (0.0, 0.05, 0.1, 0.25, 0.5)


def budget_calibration(ctx: Context, ckpt: str, scale: int = 4) -> Outcome:
    """One row per photo of the role (true MSE, self MSE, ratio) and one of the ratio's quantiles."""
    if ctx.photos is None:
        raise ValueError("budget_calibration reads photos: give the step the train role")
    model = load(ckpt, device="cpu")
    rows = []
    with torch.inference_mode():
        for path in list_images(ctx.photos):
            hr, lr = make_pair(read_image(path), scale)
            sr, _ = model.super_resolve(lr[None], float(scale), RoutingSpec())
            true = 10 ** (-psnr(sr[0].clamp(0, 1), hr, scale) / 10)
            own, _ = self_error(model.network, lr[None], scale, 0.0)
            rows.append({"image": path.name, "hr_size": f"{hr.shape[-2]}x{hr.shape[-1]}", "mse": true,
                         "self_mse": float(own[0]), "ratio": true / float(own[0])})
    ratios = np.array([r["ratio"] for r in rows])
    rows.append({"image": "quantiles", **{f"q{q:g}": float(np.quantile(ratios, q)) for q in QUANTILES}})
    return Outcome(rows=rows)
