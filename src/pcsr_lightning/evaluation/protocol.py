"""The test protocol of the paper's table: how an HR image becomes an (HR, LR) pair, and which crop is kept.
"""

from __future__ import annotations

from pathlib import Path

import torch

from pcsr_lightning.data.bicubic import imresize, make_pair
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, ImageReadError, list_images, read_image
from pcsr_lightning.measure.metrics import psnr, shave_for


def paper_crop_size(n: int) -> int:
    """Largest 28m + 4 <= n: the LR side the paper's table keeps (32x32 patches with step 28)."""
    if n < 32:
        raise ImageReadError(f"LR side {n} is below 32, too small for --crop paper")
    return 28 * ((n - 4) // 28) + 4


def crop_paper(hr: torch.Tensor, lr: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left crop of the LR to 28m + 4 on each side, HR to match."""
    h, w = paper_crop_size(lr.shape[-2]), paper_crop_size(lr.shape[-1])
    return hr[..., : round(h * scale), : round(w * scale)], lr[..., :h, :w]


def find_lr(lr_dir: Path, hr_path: Path, scale: float) -> Path:
    """The LR file paired with an HR file: same stem, or stem + 'x4' (DIV2K style), any image extension."""
    candidates = [p for p in list_images(lr_dir) if p.stem in (hr_path.stem, f"{hr_path.stem}x{scale:g}")]
    if not candidates:
        raise ImageReadError(f"no LR image for {hr_path.name} in {lr_dir}")
    return candidates[0]


def load_pair(hr_path: Path, scale: float, lr_dir: Path | None, crop: str | None,
              max_pixels: int = DEFAULT_MAX_PIXELS):
    """(HR, LR) for one test image: LR by MATLAB bicubic, or read from ``lr_dir`` and checked. An image
    too small for the scale, the crop or the shaved border raises ImageReadError naming it."""
    hr = read_image(hr_path, max_pixels)
    try:
        if lr_dir is None:
            hr, lr = make_pair(hr, scale)
        else:
            lr = read_image(find_lr(lr_dir, hr_path, scale), max_pixels)
            hh, ww = round(lr.shape[-2] * scale), round(lr.shape[-1] * scale)
            if hr.shape[-2] < hh or hr.shape[-1] < ww:
                raise ImageReadError(f"HR {tuple(hr.shape[-2:])} is smaller than x{scale:g} of its LR "
                                     f"{tuple(lr.shape[-2:])}")
            hr = hr[..., :hh, :ww]
        if crop == "paper":
            hr, lr = crop_paper(hr, lr, scale)
        elif crop not in (None, "none"):
            raise ValueError(f"unknown crop {crop!r}; expected 'paper' or 'none'")
        shave = shave_for(scale)
        if min(hr.shape[-2:]) <= 2 * shave:
            raise ImageReadError(f"HR {tuple(hr.shape[-2:])} is too small for x{scale:g}: PSNR shaves {shave} "
                                 "pixels at each border and nothing would be left")
    except ImageReadError as err:
        raise ImageReadError(f"{hr_path.name}: {err}") from err
    return hr, lr


def bicubic_sr(hr: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
    """The (3,h,w) LR upscaled to the HR's size by MATLAB-style bicubic: the baseline every SR network must beat."""
    return imresize(lr[None], tuple(hr.shape[-2:]))[0]


def bicubic_psnr(hr: torch.Tensor, lr: torch.Tensor, scale: float) -> float:
    """PSNR of the bicubic baseline."""
    return psnr(bicubic_sr(hr, lr), hr, shave_for(scale))
