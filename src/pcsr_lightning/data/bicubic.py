"""MATLAB ``imresize`` (bicubic, antialiased when shrinking), in float, as SR benchmarks make LR images.

Each axis is a dense (out, in) weight matrix built in float64 from the cubic kernel (a = -0.5), with
MATLAB's symmetric border handling, then applied as a matmul.
"""

from __future__ import annotations

import math

import torch

from pcsr_lightning.io.images import ImageReadError


def cubic(x: torch.Tensor) -> torch.Tensor:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's)."""
    ax = x.abs()
    ax2, ax3 = ax * ax, ax * ax * ax
    inner = 1.5 * ax3 - 2.5 * ax2 + 1
    outer = -0.5 * ax3 + 2.5 * ax2 - 4 * ax + 2
    return inner * (ax <= 1) + outer * ((ax > 1) & (ax <= 2))


def resize_matrix(in_len: int, out_len: int, antialias: bool = True) -> torch.Tensor:
    """(out_len, in_len) float64 weights of a 1-D MATLAB bicubic resize."""
    scale = out_len / in_len
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def kernel(t):
            return scale * cubic(scale * t)
    else:
        kernel = cubic
    x = torch.arange(1, out_len + 1, dtype=torch.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = torch.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + torch.arange(taps, dtype=torch.float64)[None]
    weights = kernel(u[:, None] - idx)
    weights = weights / weights.sum(1, keepdim=True)
    # Symmetric padding: indices 0, -1, ... mirror to 1, 2, ... (1-based), as MATLAB does.
    period = 2 * in_len
    j = torch.remainder(idx.long() - 1, period)
    j = torch.where(j < in_len, j, period - 1 - j)
    mat = torch.zeros(out_len, in_len, dtype=torch.float64)
    mat.scatter_add_(1, j, weights)
    return mat


def imresize(img: torch.Tensor, size: tuple[int, int], antialias: bool = True) -> torch.Tensor:
    """Resize (…,C,H,W) float images to ``size`` = (h, w), height first, result not rounded."""
    if img.shape[-2:] == tuple(size):
        return img.clone()
    rows = resize_matrix(img.shape[-2], size[0], antialias).to(img.device, torch.float32)
    cols = resize_matrix(img.shape[-1], size[1], antialias).to(img.device, torch.float32)
    x = img.float()
    x = torch.matmul(rows, x)  # (out_h, H) @ (..., H, W)
    x = torch.matmul(x, cols.t())
    return x


def make_pair(hr: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The one rule for LR from HR, used by training crops, validation, evaluation and the bench: the LR is
    floor(H / s) x floor(W / s), the HR is cropped (top-left) to round(h * s) x round(w * s) so that both
    cover the same area, and LR = MATLAB-style bicubic of that HR. For an integer scale the crop is to a
    multiple of s; a side already a multiple of s is kept whole."""
    h, w = int(hr.shape[-2] // scale), int(hr.shape[-1] // scale)
    if h < 1 or w < 1:
        raise ImageReadError(f"image of {tuple(hr.shape[-2:])} is too small for x{scale:g}")
    hr = hr[..., : round(h * scale), : round(w * scale)]
    return hr, imresize(hr, (h, w))


def downscale(hr: torch.Tensor, scale: float) -> torch.Tensor:
    """The LR of ``make_pair``."""
    return make_pair(hr, scale)[1]
