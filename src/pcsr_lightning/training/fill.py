"""Fitting the gate's linear fill (``models.fill.LinearFill``) in closed form on HR photos.

The fill is linear in its weights, so the best filter in the least-squares sense comes from the normal
equations, summed photo by photo: no learning rate, no steps, the same filter from the same photos. Its
target is what bicubic misses, HR minus the bicubic upscale of the LR, per HR phase; the fitted filter is
bicubic's plus that correction. Only LR pixels whose 5x5 neighbourhood is flat (largest |Laplacian| below
``FIT_BELOW``, the gate's own score at one-pixel tiles) count: those are the pixels the gate skips, and a
filter fitted on edges would trade their error against the flat pixels'.

Measured on the development photos (leave one out, ``experiments/results/skip_flat.md``): with CARN-PCSR
the fitted fill keeps every photo within 0.05 dB of PCSR up to gate threshold 0.2, where bicubic keeps 10 of
18; the study ``gate_fill`` fits it on train photos, chooses the threshold on val and reports on report.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from pcsr_lightning.data.bicubic import make_pair
from pcsr_lightning.inference.gate import flatness_scores
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, read_image
from pcsr_lightning.io.weights import load_model, save_model
from pcsr_lightning.models.fill import RADIUS, LinearFill

FILL_TARGET = "pcsr_lightning.models.LinearFill"
FIT_BELOW = 0.2  # an LR pixel is fitted when its 5x5 neighbourhood's largest |Laplacian| is below this
RIDGE = 1.0e-6  # added to the normal equations' diagonal: a photo set with no texture still solves
ROWS_PER_PASS = 64  # LR rows whose neighbourhoods are unfolded at once (bounded memory on 8K photos)


class FillStatistics:
    """The normal equations of the fill's correction, (X'X, X'Y) with X the flat LR pixels' 5x5
    neighbourhoods and a constant 1, Y their HR pixels minus bicubic by phase; summed over ``add`` calls."""

    def __init__(self, scale: int, radius: int = RADIUS, below: float = FIT_BELOW):
        self.bicubic = LinearFill(scale, radius)  # unfitted: exactly bicubic
        self.scale, self.radius, self.below = self.bicubic.scale, self.bicubic.radius, float(below)
        n = self.bicubic.taps ** 2 + 1
        self.xtx = torch.zeros(n, n, dtype=torch.float64)
        self.xty = torch.zeros(n, self.scale * self.scale, dtype=torch.float64)
        self.yty = 0.0  # the target's sum of squares: bicubic's squared error on the fitted pixels
        self.pixels = 0  # flat LR pixels (times channels) summed so far
        self.images = 0

    def add(self, lr: torch.Tensor, hr: torch.Tensor) -> int:
        """Add (B,3,h,w) ``lr`` and its (B,3,s*h,s*w) ``hr``, both in [0, 1]; returns the flat pixels added."""
        s = self.scale
        if lr.dim() != 4 or lr.shape[1] != 3 or tuple(hr.shape) != (lr.shape[0], 3, lr.shape[2] * s, lr.shape[3] * s):
            raise ValueError(f"the fill is fitted on (B,3,h,w) LR and (B,3,{s}h,{s}w) HR, got {tuple(lr.shape)} "
                             f"and {tuple(hr.shape)}")
        lr, hr = lr.double(), hr.double()
        b, _, h, w = lr.shape
        k = self.bicubic.taps
        flat = (flatness_scores(lr, 1) < self.below)  # (B,h,w)
        residual = hr - self.bicubic(lr)
        padded = self.bicubic.padded(lr)
        added = 0
        for y0 in range(0, h, ROWS_PER_PASS):
            y1 = min(h, y0 + ROWS_PER_PASS)
            mask = flat[:, y0:y1].reshape(b, 1, -1).expand(b, 3, -1).reshape(-1)
            if not bool(mask.any()):
                continue
            band = padded[:, :, y0 : y1 + 2 * self.radius].reshape(b * 3, 1, -1, w + 2 * self.radius)
            x = F.unfold(band, k).transpose(1, 2).reshape(-1, k * k)[mask]  # (n, k*k)
            x = torch.cat([x, x.new_ones(x.shape[0], 1)], 1)
            y = residual[:, :, y0 * s : y1 * s].reshape(b, 3, y1 - y0, s, w, s).permute(0, 1, 2, 4, 3, 5)
            y = y.reshape(-1, s * s)[mask]
            self.xtx += x.T @ x
            self.xty += x.T @ y
            self.yty += float(y.square().sum())
            added += int(x.shape[0])
        self.pixels += added
        self.images += b
        return added

    def correction(self, ridge: float = RIDGE) -> torch.Tensor:
        """(taps^2 + 1, s*s): the least-squares correction to bicubic, the bias in the last row."""
        if self.pixels == 0:
            raise ValueError(f"no flat LR pixel to fit the fill on (largest |Laplacian| below {self.below} in a 5x5 "
                             f"neighbourhood) in {self.images} image(s)")
        n = self.xtx.shape[0]
        return torch.linalg.solve(self.xtx + ridge * torch.eye(n, dtype=torch.float64), self.xty)

    def rms_errors(self, solution: torch.Tensor) -> tuple[float, float]:
        """Root mean square error on the fitted pixels (image range) of bicubic and of bicubic plus
        ``solution``: how much the fill gains on the photos it was fitted on (not a held-out figure)."""
        values = self.pixels * self.scale * self.scale
        fitted = self.yty - 2 * float((solution * self.xty).sum()) + float((solution * (self.xtx @ solution)).sum())
        return (self.yty / values) ** 0.5, max(0.0, fitted / values) ** 0.5

    @classmethod
    def merged(cls, parts: Iterable[FillStatistics]) -> FillStatistics:
        """The statistics of several photo sets together (the normal equations add up), e.g. all photos
        but one."""
        parts = list(parts)
        if not parts:
            raise ValueError("no statistics to merge")
        total = cls(parts[0].scale, parts[0].radius, parts[0].below)
        if any((p.scale, p.radius, p.below) != (total.scale, total.radius, total.below) for p in parts):
            raise ValueError("statistics of different scales, radii or flatness bounds do not add up")
        for part in parts:
            total.xtx += part.xtx
            total.xty += part.xty
            total.yty += part.yty
            total.pixels += part.pixels
            total.images += part.images
        return total

    def solve(self, ridge: float = RIDGE) -> LinearFill:
        """The fitted fill: bicubic's filters plus the least-squares correction."""
        return self.fill_of(self.correction(ridge))

    def fill_of(self, solution: torch.Tensor) -> LinearFill:
        """The fill of a ``correction``: bicubic's filters plus it."""
        fill = LinearFill(self.scale, self.radius)
        weight = fill.weight.double().reshape(self.scale * self.scale, -1) + solution[:-1].T
        fill.set_filters(weight.float(), solution[-1].float())
        return fill


def fit_fill(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], scale: int, below: float = FIT_BELOW
             ) -> tuple[LinearFill, FillStatistics]:
    """The fill fitted on (LR, HR) pairs ((1,3,h,w), (1,3,s*h,s*w), [0, 1]) and the statistics it came from."""
    stats = FillStatistics(scale, below=below)
    for lr, hr in pairs:
        stats.add(lr, hr)
    return stats.solve(), stats


def fit_fill_model(src: str | Path, photos: Sequence[Path], out: str | Path, scale: int = 4,
                   below: float = FIT_BELOW, max_pixels: int = DEFAULT_MAX_PIXELS, format: str | None = None,
                   on_photo: Callable[[Path, int, int], None] | None = None) -> tuple[Path, dict]:
    """``pcsr fit-fill``: a copy of the PCSR model at ``src`` with its fill fitted on ``photos``, written to
    ``out``; and what the fit measured. ``on_photo(path, flat, lr_pixels)`` after each photo."""
    if scale < 2:
        raise ValueError(f"--scale must be an integer >= 2, got {scale}")
    if not below > 0:
        raise ValueError(f"--below must be > 0, got {below}")
    loaded = load_model(src)
    if not loaded.is_pcsr:
        raise ValueError(f"{src}: an original network has no flat-tile gate to fill for; give a PCSR model")
    stats = FillStatistics(scale, below=below)
    for path in photos:
        hr, lr = make_pair(read_image(path, max_pixels), scale)
        added = stats.add(lr[None], hr[None])
        if on_photo is not None:
            on_photo(path, added // 3, lr.shape[-2] * lr.shape[-1])
    solution = stats.correction()
    fill = stats.fill_of(solution)
    bicubic, fitted = stats.rms_errors(solution)
    loaded.model.fill = fill
    config = {**loaded.config, "fill": {"_target_": FILL_TARGET, "scale": fill.scale, "radius": fill.radius}}
    measured = {"photos": [p.name for p in photos], "flat_lr_pixels": stats.pixels // 3, "below": below,
                "rms_bicubic": bicubic, "rms_fitted": fitted}
    written = save_model(out, loaded.model, config, {**loaded.meta, "fill": measured}, format)
    return Path(written), {**measured, "photos": len(photos), "fill": repr(fill)}
