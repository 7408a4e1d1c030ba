"""What the bench runs on: a size parsed from ``HxW``, a photo's centre or a mosaic of sample photos."""

from __future__ import annotations

import torch

from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.io.images import read_image

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")
TILE = 256


def parse_size(text: str) -> tuple[int, int]:
    """'HxW' -> (H, W)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise ValueError(f"--hr-size must look like 2160x3840 (HxW), got {text!r}") from None
    if h < 1 or w < 1:
        raise ValueError(f"--hr-size must be positive, got {text!r}")
    return h, w


def photo_crop(path: str, hr_size: tuple[int, int]) -> torch.Tensor:
    """(3,H,W) in [0,1]: the centre of a photo at its own resolution (a smaller photo is refused)."""
    img = read_image(path)
    (h, w), (hh, ww) = img.shape[-2:], hr_size
    if h < hh or w < ww:
        raise ValueError(f"--hr-image {path} is {h}x{w}, smaller than --hr-size {hh}x{ww}")
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    return img[:, y0 : y0 + hh, x0 : x0 + ww].contiguous()


def photo_mosaic(hr_size: tuple[int, int]) -> torch.Tensor:
    """(3,H,W) in [0,1]: native-resolution 256x256 crops of scikit-image's sample photos, tiled.

    Real texture at its own scale keeps the routing realistic (an upscaled photo would be mostly smooth).
    """

    photos = [sample_photo(name) for name in PHOTOS]
    h, w = hr_size
    out = torch.empty(3, h, w)
    for ty, y0 in enumerate(range(0, h, TILE)):
        for tx, x0 in enumerate(range(0, w, TILE)):
            photo = photos[(ty + 2 * tx) % len(photos)]
            ph, pw = photo.shape[-2:]
            oy, ox = (37 * (ty + tx)) % (ph - TILE + 1), (53 * (ty + 3 * tx)) % (pw - TILE + 1)
            y1, x1 = min(h, y0 + TILE), min(w, x0 + TILE)
            out[:, y0:y1, x0:x1] = photo[:, oy : oy + y1 - y0, ox : ox + x1 - x0]
    return out
