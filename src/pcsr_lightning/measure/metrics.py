"""Image metrics as small pure functions with explicit protocol arguments (BasicSR style)."""

from __future__ import annotations

import math

import torch


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0,1] float -> integer levels 0..255 (as float64), the way saved images are compared."""
    return img.detach().double().clamp(0, 1).mul(255).round()


def psnr(pred: torch.Tensor, target: torch.Tensor, crop_border: int, rounding: bool = True) -> float:
    """RGB PSNR in dB of (…,3,H,W) images in [0,1]: clamp, x255, round, shave ``crop_border`` pixels."""
    if pred.shape != target.shape:
        raise ValueError(f"PSNR needs equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    a = quantize(pred) if rounding else pred.detach().double().clamp(0, 1) * 255
    b = quantize(target) if rounding else target.detach().double().clamp(0, 1) * 255
    if crop_border > 0:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if a.numel() == 0:
        raise ValueError(f"PSNR of {tuple(pred.shape[-2:])} images shaved by {crop_border}: no pixel is left")
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def shave_for(scale: float) -> int:
    """The border the protocol shaves: ``scale`` pixels (rounded up for non-integer scales)."""
    return math.ceil(scale)
