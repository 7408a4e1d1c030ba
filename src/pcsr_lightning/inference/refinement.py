"""Pixel-wise refinement: light pixels next to heavy ones take their 3x3 mean, hiding the seams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from pcsr_lightning.inference.cache import cpu_cache_budget
from pcsr_lightning.inference.router import heavy_mask
from pcsr_lightning.inference.workers import Workers


def refinement_mask(classes: torch.Tensor, num_classes: int, skipped: bool = False) -> torch.Tensor:
    """(B,H,W) light pixels with a heavy pixel in their 3x3 neighbourhood, outer border excluded.
    ``skipped``: the map may hold class M (the gate's skipped pixels), never refined: they keep the
    cheap reconstruction the gate promises."""
    heavy = heavy_mask(classes, num_classes)
    # 3x3 dilation as two 1-D passes of shifted ORs on bools (the border is cleared below anyway).
    rows = heavy.clone()
    rows[:, :, 1:] |= heavy[:, :, :-1]
    rows[:, :, :-1] |= heavy[:, :, 1:]
    near_heavy = rows.clone()
    near_heavy[:, 1:] |= rows[:, :-1]
    near_heavy[:, :-1] |= rows[:, 1:]
    cond = ~heavy & near_heavy
    if skipped:
        cond &= classes < num_classes
    cond[:, [0, -1], :] = False
    cond[:, :, [0, -1]] = False
    return cond


def refine(pred: torch.Tensor, classes: torch.Tensor, num_classes: int, skipped: bool = False) -> torch.Tensor:
    """Replace the masked pixels of pred (B,3,H,W) by their 3x3 mean (replicate padding)."""
    cond = refinement_mask(classes, num_classes, skipped)
    if not bool(cond.any()):
        return pred
    mean = F.avg_pool2d(F.pad(pred, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return torch.where(cond[:, None], mean, pred)


# A band's working set is about this many (3, rows, W) arrays: the image rows, their vertical sums and
# the 3x3 box sums.
BAND_ARRAYS = 2
MIN_BAND_ROWS = 8  # thinner bands lose more to per-band overhead than they gain in cache


def band_rows(width: int, element_size: int = 4) -> int:
    """CPU refinement band height for an image ``width`` wide: the band's sums fit the threads' L2."""
    return max(MIN_BAND_ROWS, cpu_cache_budget() // (BAND_ARRAYS * 3 * width * element_size))


def band_mask(classes: torch.Tensor, num_classes: int, r0: int, r1: int, skipped: bool = False) -> torch.Tensor:
    """``refinement_mask`` of one image's rows [r0, r1) (0 < r0 < r1 < H) from its (H,W) class map: the
    same booleans, from rows r0-1 .. r1 only."""
    window = heavy_mask(classes[r0 - 1 : r1 + 1], num_classes)
    rows = window.clone()
    rows[:, 1:] |= window[:, :-1]
    rows[:, :-1] |= window[:, 1:]
    near_heavy = rows[1:-1] | rows[:-2]
    near_heavy |= rows[2:]
    cond = ~window[1:-1] & near_heavy
    if skipped:
        cond &= classes[r0:r1] < num_classes
    cond[:, [0, -1]] = False
    return cond


def refine_in_place(
    pred: torch.Tensor, classes: torch.Tensor, num_classes: int, band: int | None = None,
    workers: Workers | None = None, skipped: bool = False,
) -> None:
    """``refine`` in place, a band of rows at a time: separable 3x3 sums of a band that stays in cache,
    written where the mask says. No image-sized temporaries (the 9-gather form cost over a second at 4K).

    The mask never touches the outer border, so only interior pixels change and no padding is needed.
    Each band reads the row above and below it as they were before any band was written (copied first),
    so the bands are independent and run on ``workers`` (``workers.Workers``) in any order.
    ``skipped``: as in ``refinement_mask``.
    """
    b, c, h, w = pred.shape
    if h < 3 or w < 3:
        return
    band = band or band_rows(w, pred.element_size())
    bands = [(r0, min(h - 1, r0 + band)) for r0 in range(1, h - 1, band)]
    for i in range(b):
        img, classes_i = pred[i], classes[i]
        edges = {r: img[:, r].clone() for r0, r1 in bands for r in (r0 - 1, r1)}

        def refine_band(rows_, local, img=img, classes_i=classes_i, edges=edges):
            r0, r1 = rows_
            mask = band_mask(classes_i, num_classes, r0, r1, skipped)
            if not bool(mask.any()):  # all one class here (all-light, all-heavy): nothing to smooth
                return
            rows = torch.cat((edges[r0 - 1][:, None], img[:, r0:r1], edges[r1][:, None]), 1)  # with its halo
            vertical = rows[:, 1:-1] + rows[:, 2:]  # rows r0 .. r1-1: itself + the row below
            vertical += rows[:, :-2]  # + the row above
            box = vertical[:, :, :-2] + vertical[:, :, 1:-1]
            box += vertical[:, :, 2:]
            target = img[:, r0:r1, 1 : w - 1]
            target.copy_(torch.where(mask[:, 1 : w - 1], box.div_(9), target))

        (workers or Workers(0)).run(refine_band, bands)
