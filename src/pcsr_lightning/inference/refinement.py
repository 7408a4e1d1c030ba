"""Pixel-wise refinement: light pixels next to heavy ones take their 3x3 mean, hiding the seams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def heavy_mask(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Heavy = the first half of the upsamplers (U_0 for M = 2)."""
    return classes < max(1, num_classes // 2)


def refinement_mask(classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """(B,H,W) light pixels with a heavy pixel in their 3x3 neighbourhood, outer border excluded."""
    heavy = heavy_mask(classes, num_classes)
    # 3x3 dilation as two 1-D passes of shifted ORs on bools (the border is cleared below anyway).
    rows = heavy.clone()
    rows[:, :, 1:] |= heavy[:, :, :-1]
    rows[:, :, :-1] |= heavy[:, :, 1:]
    near_heavy = rows.clone()
    near_heavy[:, 1:] |= rows[:, :-1]
    near_heavy[:, :-1] |= rows[:, 1:]
    cond = ~heavy & near_heavy
    cond[:, [0, -1], :] = False
    cond[:, :, [0, -1]] = False
    return cond


def refine(pred: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Replace the masked pixels of pred (B,3,H,W) by their 3x3 mean (replicate padding)."""
    cond = refinement_mask(classes, num_classes)
    if not bool(cond.any()):
        return pred
    mean = F.avg_pool2d(F.pad(pred, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
    return torch.where(cond[:, None], mean, pred)


REFINE_BAND_ROWS = 32  # measured on 2 CPU cores: 32-64 rows fastest at 2K and 4K (4-row bands are 1.6-2x slower)


def refine_in_place(
    pred: torch.Tensor, classes: torch.Tensor, num_classes: int, band: int = REFINE_BAND_ROWS
) -> None:
    """``refine`` in place, a band of rows at a time: separable 3x3 sums of a band that stays in cache,
    written where the mask says. No image-sized temporaries (the 9-gather form cost over a second at 4K).

    The mask never touches the outer border, so only interior pixels change and no padding is needed;
    the band's upper neighbour row is kept as it was before the previous band was written.
    """
    cond = refinement_mask(classes, num_classes)
    b, c, h, w = pred.shape
    if h < 3 or w < 3:
        return
    for i in range(b):
        img, mask = pred[i], cond[i]
        if not bool(mask.any()):  # all one class (all-light, all-heavy): nothing to smooth
            continue
        above = img[:, 0].clone()
        for r0 in range(1, h - 1, band):
            r1 = min(h - 1, r0 + band)
            rows = img[:, r0 : r1 + 1]
            vertical = rows[:, :-1] + rows[:, 1:]  # rows r0 .. r1-1: itself + the row below
            vertical[:, 1:] += rows[:, :-2]  # + the row above
            vertical[:, 0] += above
            box = vertical[:, :, :-2] + vertical[:, :, 1:-1]
            box += vertical[:, :, 2:]
            above = img[:, r1 - 1].clone()
            target = img[:, r0:r1, 1 : w - 1]
            target.copy_(torch.where(mask[r0:r1, 1 : w - 1], box.div_(9), target))
