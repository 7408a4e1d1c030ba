"""The pixel sampler: what an HR query feeds to the classifier and the upsamplers.

For a query at x_q (pixel centres in [-1, 1]): the nearest LR feature z*, the offset to that LR pixel's
centre in LR pixels (rel), and the HR cell size in LR pixels. Arithmetic follows ``grid_sample``
(nearest, align_corners=False) in float32 step by step, so results match the release bit for bit.

Row and column quantities are separable: ``QueryGrid`` keeps them per axis, which lets the fast path
fold an MLP's first layer onto the LR grid (see ``routed.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


def coord_axis(n: int, device: torch.device | str | None = None) -> torch.Tensor:
    """Centres of ``n`` pixels on [-1, 1]: -1 + (2i + 1) / n, evaluated as LIIF's make_coord does."""
    r = 1.0 / n
    return (-1 + r) + (2 * r) * torch.arange(n, device=device, dtype=torch.float32)


def make_coord(shape: tuple[int, int], device: torch.device | str | None = None) -> torch.Tensor:
    """(H*W, 2) query coordinates, (row, col) order, row-major."""
    rows, cols = coord_axis(shape[0], device), coord_axis(shape[1], device)
    return torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).view(-1, 2)


def make_cell(hr_size: tuple[int, int], num: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(num, 2) HR cell sizes on the [-1, 1] scale."""
    cell = torch.ones(num, 2, device=device)
    cell[:, 0] *= 2 / hr_size[0]
    cell[:, 1] *= 2 / hr_size[1]
    return cell


def nearest_index(coord: torch.Tensor, n: int) -> torch.Tensor:
    """Index of the nearest of ``n`` LR pixels, as grid_sample(mode='nearest') picks it."""
    return torch.round(((coord + 1) * n - 1) / 2).long().clamp_(0, n - 1)


def relative_offset(coord: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Query minus the chosen LR pixel's centre, in LR pixels (each component in (-1, 1))."""
    return (coord - coord_axis(n, coord.device)[index]) * n


def query_inputs(feat: torch.Tensor, coord: torch.Tensor, cell: torch.Tensor) -> torch.Tensor:
    """MLP inputs [z*, rel, cell] for arbitrary queries: feat (B,C,h,w), coord/cell (B,Q,2) -> (B,Q,C+4)."""
    b, _, h, w = feat.shape
    iy, ix = nearest_index(coord[..., 0], h), nearest_index(coord[..., 1], w)
    batch = torch.arange(b, device=feat.device).view(b, 1)
    z = feat.permute(0, 2, 3, 1)[batch, iy, ix]
    rel = torch.stack([relative_offset(coord[..., 0], iy, h), relative_offset(coord[..., 1], ix, w)], -1)
    rel_cell = torch.stack([cell[..., 0] * h, cell[..., 1] * w], -1)
    return torch.cat([z, rel, rel_cell], dim=-1)


@dataclass(frozen=True)
class QueryGrid:
    """Per-axis sampler quantities for a full H x W output on an h x w feature map."""

    lr_size: tuple[int, int]
    hr_size: tuple[int, int]
    row_index: torch.Tensor  # (H,) nearest LR row per HR row
    col_index: torch.Tensor  # (W,)
    rel_row: torch.Tensor  # (H,)
    rel_col: torch.Tensor  # (W,)
    cell: tuple[float, float]  # (2/H*h, 2/W*w), identical for every query

    @staticmethod
    def build(lr_size: tuple[int, int], hr_size: tuple[int, int], device=None) -> QueryGrid:
        (h, w), (hh, ww) = lr_size, hr_size
        rows, cols = coord_axis(hh, device), coord_axis(ww, device)
        iy, ix = nearest_index(rows, h), nearest_index(cols, w)
        cell = make_cell(hr_size, 1, device)[0]
        return QueryGrid(
            lr_size, hr_size, iy, ix, relative_offset(rows, iy, h), relative_offset(cols, ix, w),
            (float(cell[0] * h), float(cell[1] * w)),
        )


def output_size(lr_size: tuple[int, int], scale: float) -> tuple[int, int]:
    """H = round(h * s), W = round(w * s): any scale > 1 works."""
    if not scale > 1:
        raise ValueError(f"scale must be > 1, got {scale}")
    return round(lr_size[0] * scale), round(lr_size[1] * scale)
