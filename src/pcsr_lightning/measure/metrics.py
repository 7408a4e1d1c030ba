"""Image metrics as small pure functions with explicit protocol arguments (BasicSR style).

Every metric sees the same pair: both images clamped to [0,1], x255, rounded to the levels a saved
image holds, and ``crop_border`` pixels shaved at each side. ``psnr`` is on RGB; ``psnr_y`` and ``ssim``
are on the BT.601 luma Y of MATLAB's ``rgb2ycbcr`` (16..235 scale, not rounded), as SR papers and
BasicSR's ``test_y_channel`` report them.

torchmetrics is not used here: its PSNR gives the same numbers (a test checks it) but importing it costs
about 2 s per ``pcsr eval`` call, and its SSIM also averages the reflect-padded border, which BasicSR's
does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

# MATLAB rgb2ycbcr: Y = 16 + (65.481 R + 128.553 G + 24.966 B) for R, G, B in [0, 1].
Y_WEIGHTS = (65.481, 128.553, 24.966)
SSIM_WINDOW, SSIM_SIGMA = 11, 1.5


def quantize(img: torch.Tensor) -> torch.Tensor:
    """[0,1] float -> integer levels 0..255 (as float64), the way saved images are compared."""
    return img.detach().double().clamp(0, 1).mul(255).round()


def levels_pair(pred: torch.Tensor, target: torch.Tensor, crop_border: int,
                rounding: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Both (...,3,H,W) images as float64 levels 0..255, shaved by ``crop_border`` pixels."""
    if pred.shape != target.shape:
        raise ValueError(f"metrics need equal shapes, got {tuple(pred.shape)} and {tuple(target.shape)}")
    if pred.shape[-3] != 3:
        raise ValueError(f"metrics need RGB images (...,3,H,W), got {tuple(pred.shape)}")
    a = quantize(pred) if rounding else pred.detach().double().clamp(0, 1) * 255
    b = quantize(target) if rounding else target.detach().double().clamp(0, 1) * 255
    if crop_border > 0:
        a = a[..., crop_border:-crop_border, crop_border:-crop_border]
        b = b[..., crop_border:-crop_border, crop_border:-crop_border]
    if a.numel() == 0:
        raise ValueError(f"PSNR of {tuple(pred.shape[-2:])} images shaved by {crop_border}: no pixel is left")
    return a, b


def rgb_to_y(levels: torch.Tensor) -> torch.Tensor:
    """(...,3,H,W) RGB levels 0..255 -> (...,1,H,W) luma Y on MATLAB's 16..235 scale."""
    w = torch.tensor(Y_WEIGHTS, dtype=levels.dtype, device=levels.device).view(3, 1, 1) / 255
    return 16 + (levels * w).sum(dim=-3, keepdim=True)


def psnr_of_levels(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float(((a - b) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def psnr(pred: torch.Tensor, target: torch.Tensor, crop_border: int, rounding: bool = True) -> float:
    """RGB PSNR in dB of (...,3,H,W) images in [0,1]: clamp, x255, round, shave ``crop_border`` pixels."""
    return psnr_of_levels(*levels_pair(pred, target, crop_border, rounding))


def psnr_y(pred: torch.Tensor, target: torch.Tensor, crop_border: int, rounding: bool = True) -> float:
    """PSNR in dB on the luma Y (peak 255), same protocol as ``psnr``."""
    a, b = levels_pair(pred, target, crop_border, rounding)
    return psnr_of_levels(rgb_to_y(a), rgb_to_y(b))


def gaussian_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """Normalised 1-D Gaussian, float64 (OpenCV's getGaussianKernel)."""
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """(size, size) window: the outer product of ``gaussian_1d`` with itself."""
    g = gaussian_1d(size, sigma)
    return torch.outer(g, g)


def ssim_of_y(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean SSIM of two (...,1,H,W) luma images on the 0..255 scale, over the window's valid positions."""
    g = gaussian_1d().to(a.device)
    size = g.numel()
    a, b = a.reshape(-1, 1, *a.shape[-2:]), b.reshape(-1, 1, *b.shape[-2:])
    if min(a.shape[-2:]) < size:
        raise ValueError(f"SSIM needs images of at least {size}x{size} pixels after shaving, got {tuple(a.shape[-2:])}")

    def blur(x: torch.Tensor) -> torch.Tensor:  # the 2-D window, applied as two 1-D passes ('valid')
        return F.conv2d(F.conv2d(x, g.view(1, 1, 1, size)), g.view(1, 1, size, 1))

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(ssim_map.mean())


def ssim(pred: torch.Tensor, target: torch.Tensor, crop_border: int, rounding: bool = True) -> float:
    """SSIM on the luma Y: 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, as BasicSR."""
    a, b = levels_pair(pred, target, crop_border, rounding)
    return ssim_of_y(rgb_to_y(a), rgb_to_y(b))


# The metrics `pcsr eval --metrics`, `pcsr table --metrics` and validation can report, by column name.
METRICS: dict[str, Callable[[torch.Tensor, torch.Tensor, int], float]] = {"psnr": psnr, "psnr_y": psnr_y, "ssim": ssim}


def score(names, pred: torch.Tensor, target: torch.Tensor, crop_border: int) -> dict[str, float]:
    """The named metrics of one pair, e.g. ``{"psnr": ..., "ssim": ...}``: the same numbers as the single
    functions, with the pair quantized, shaved and converted to Y once."""
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(METRICS)}")
    a, b = levels_pair(pred, target, crop_border)
    luma = (rgb_to_y(a), rgb_to_y(b)) if {"psnr_y", "ssim"} & set(names) else None
    of_levels = {"psnr": lambda: psnr_of_levels(a, b), "psnr_y": lambda: psnr_of_levels(*luma),
                 "ssim": lambda: ssim_of_y(*luma)}
    return {n: of_levels[n]() for n in names}


def shave_for(scale: float) -> int:
    """The border the protocol shaves: ``scale`` pixels (rounded up for non-integer scales)."""
    return math.ceil(scale)


def correlation(a: torch.Tensor, b: torch.Tensor) -> float:
    """Pearson correlation of two tensors' values (flattened): how well a predicted score ranks what it
    predicts, whatever its offset and scale. 0 when either is constant."""
    if a.numel() != b.numel():
        raise ValueError(f"correlation needs as many values on both sides, got {a.numel()} and {b.numel()}")
    x, y = a.detach().double().flatten(), b.detach().double().flatten()
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / (x.norm() * y.norm()).clamp(min=1e-12))
