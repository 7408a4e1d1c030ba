"""A picture a person can look at: for each photo, crops of bicubic | SR | HR beside the class map.

The crop is the window with the most detail (mean absolute Laplacian of the HR's luma), where bicubic
and PCSR differ and where PCSR spends its heavy upsampler; flat windows would show three equal squares.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from pcsr_lightning.io.files import atomic_write
from pcsr_lightning.io.images import to_uint8

LABEL_HEIGHT = 18
GAP = 4


@dataclass
class FigureRow:
    title: str  # e.g. the photo's name and its PSNRs
    panels: list[torch.Tensor]  # (3,H,W) each, in [0,1], all the same size
    labels: list[str]  # one per panel


def detail_window(hr: torch.Tensor, size: int) -> tuple[int, int, int]:
    """(top, left, size) of the ``size`` x ``size`` window with the most detail, on a half-window grid."""
    h, w = hr.shape[-2:]
    size = min(size, h, w)
    luma = (hr.float() * torch.tensor([0.299, 0.587, 0.114]).view(3, 1, 1)).sum(0)[None, None]
    kernel = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)
    energy = F.conv2d(F.pad(luma, (1, 1, 1, 1), mode="replicate"), kernel).abs()
    stride = max(1, size // 2)
    scores = F.avg_pool2d(energy, size, stride)[0, 0]
    best = int(torch.argmax(scores))
    top, left = divmod(best, scores.shape[1])
    return top * stride, left * stride, size


def crop(img: torch.Tensor, window: tuple[int, int, int]) -> torch.Tensor:
    top, left, size = window
    return img[..., top : top + size, left : left + size]


def comparison_figure(rows: list[FigureRow], caption: list[str] = ()) -> Image.Image:
    """Rows of labelled panels on a white canvas, each row under its title; ``caption`` lines on top."""
    width = max(sum(p.shape[-1] for p in row.panels) + GAP * (len(row.panels) - 1) for row in rows)
    height = sum(2 * LABEL_HEIGHT + max(p.shape[-2] for p in row.panels) + GAP for row in rows)
    height += LABEL_HEIGHT * len(caption)
    canvas = Image.new("RGB", (width + 2 * GAP, height + GAP), "white")
    draw = ImageDraw.Draw(canvas)
    y = GAP
    for line in caption:
        draw.text((GAP, y + 2), line, fill="black")
        y += LABEL_HEIGHT
    for row in rows:
        draw.text((GAP, y + 2), row.title, fill="black")
        y += LABEL_HEIGHT
        x = GAP
        for panel, label in zip(row.panels, row.labels):
            draw.text((x, y + 2), label, fill="black")
            canvas.paste(Image.fromarray(to_uint8(panel)), (x, y + LABEL_HEIGHT))
            x += panel.shape[-1] + GAP
        y += LABEL_HEIGHT + max(p.shape[-2] for p in row.panels) + GAP
    return canvas


def save_figure(figure: Image.Image, path: str | Path) -> Path:
    return atomic_write(path, lambda tmp: figure.save(tmp, format="PNG"))
