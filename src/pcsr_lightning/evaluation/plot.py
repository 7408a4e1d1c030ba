"""PSNR-vs-GFLOPs plots drawn with Pillow (no plotting library): curves, points, axes and a legend."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from pcsr_lightning.io.files import atomic_write

PALETTE = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14), (23, 190, 207)]


@dataclass
class Series:
    """A labelled set of (GFLOPs, PSNR) points; ``line`` joins them (a k curve), else markers only."""

    label: str
    points: Sequence[tuple[float, float]]
    line: bool = True
    notes: Sequence[str] = ()  # text beside each point (e.g. k values)
    marker: str = "circle"  # circle, square, diamond
    group: str = ""  # series of one group (a model and its original) share a colour


def nice_ticks(lo: float, hi: float, count: int = 6) -> list[float]:
    """Round tick positions (1, 2, 5 x 10^n steps) from at or below ``lo`` to at or above ``hi``."""
    if not hi > lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, count - 1)
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    first, last = math.floor(lo / step), math.ceil(hi / step)
    return [round(i * step, 10) for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """Round ticks for a log axis from at or below ``lo`` to at or above ``hi`` (both > 0): 1, 2, 5 x 10^n,
    or finer steps when the range spans less than a factor of 5."""
    mantissas = (1, 2, 5) if hi >= 5 * lo else (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8)
    ticks = [round(m * 10.0 ** e, 12) for e in range(math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1)
             for m in mantissas]
    below = [t for t in ticks if t <= lo] or [ticks[0]]
    above = [t for t in ticks if t >= hi] or [ticks[-1]]
    return [t for t in ticks if below[-1] <= t <= above[0]]


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _marker(draw: ImageDraw.ImageDraw, x: float, y: float, shape: str, color, r: int = 6) -> None:
    if shape == "square":
        draw.rectangle([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))
    elif shape == "diamond":
        draw.polygon([(x, y - r - 2), (x + r + 2, y), (x, y + r + 2), (x - r - 2, y)], fill=color, outline=(0, 0, 0))
    else:
        draw.ellipse([x - r, y - r, x + r, y + r], fill=color, outline=(0, 0, 0))


def draw_plot(series: Sequence[Series], title: str, xlabel: str = "GFLOPs per image (paper convention)",
              ylabel: str = "PSNR (dB)", size: tuple[int, int] = (1200, 720), log_x: bool = False) -> Image.Image:
    """``log_x``: GFLOPs on a log scale, which spreads the light end of a PCSR curve (most of a sweep's
    points sit within a few percent of the all-light cost)."""
    points = [p for s in series for p in s.points if all(map(math.isfinite, p))]
    if not points:
        raise ValueError("nothing to plot: no finite (GFLOPs, PSNR) point")
    if log_x and min(p[0] for p in points) <= 0:
        raise ValueError("a log GFLOPs axis needs every GFLOPs value above 0")
    fx = math.log10 if log_x else (lambda v: v)
    img = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(img)
    font, small, big = _font(18), _font(14), _font(22)
    left, right, top, bottom = 100, size[0] - 340, 60, size[1] - 80
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    if log_x:
        xt = log_ticks(min(xs), max(xs))
    else:
        xpad = (max(xs) - min(xs)) * 0.08 or 1.0
        xt = nice_ticks(min(xs) - xpad, max(xs) + xpad)
    ypad = (max(ys) - min(ys)) * 0.1 or 0.5
    yt = nice_ticks(min(ys) - ypad, max(ys) + ypad)
    x0, x1, y0, y1 = fx(xt[0]), fx(xt[-1]), yt[0], yt[-1]

    def to_px(x: float, y: float) -> tuple[float, float]:
        return (left + (fx(x) - x0) / (x1 - x0 or 1) * (right - left),
                bottom - (y - y0) / (y1 - y0 or 1) * (bottom - top))

    draw.text((left, 18), title, fill="black", font=big)
    for t in xt:
        px, _ = to_px(t, y0)
        draw.line([px, top, px, bottom], fill=(230, 230, 230))
        draw.text((px, bottom + 8), f"{t:g}", fill="black", font=small, anchor="mt")
    for t in yt:
        _, py = to_px(xt[0], t)
        draw.line([left, py, right, py], fill=(230, 230, 230))
        draw.text((left - 8, py), f"{t:g}", fill="black", font=small, anchor="rm")
    draw.rectangle([left, top, right, bottom], outline="black")
    draw.text(((left + right) / 2, size[1] - 30), xlabel, fill="black", font=font, anchor="mm")
    label_img = Image.new("RGB", (bottom - top, 30), "white")
    ImageDraw.Draw(label_img).text(((bottom - top) / 2, 15), ylabel, fill="black", font=font, anchor="mm")
    img.paste(label_img.rotate(90, expand=True), (20, top))
    groups: dict[str, int] = {}
    note_boxes: list[tuple[float, float, float, float]] = []
    for i, s in enumerate(series):
        color = PALETTE[groups.setdefault(s.group or s.label, len(groups)) % len(PALETTE)]
        pts = [to_px(*p) for p in s.points if all(map(math.isfinite, p))]
        if s.line and len(pts) > 1:
            draw.line(sorted(pts), fill=color, width=3)
        for (px, py), note in zip(pts, list(s.notes) + [""] * len(pts)):
            _marker(draw, px, py, s.marker, color)
            box = draw.textbbox((px + 9, py - 9), note, font=small, anchor="ls") if note else None
            # A label over another one is unreadable: skip it (the legend and the CSV have every point).
            if box and not any(b[0] < box[2] and box[0] < b[2] and b[1] < box[3] and box[1] < b[3] for b in note_boxes):
                note_boxes.append(box)
                draw.text((px + 9, py - 9), note, fill=color, font=small, anchor="ls")
        ly = top + 10 + 28 * i
        _marker(draw, right + 30, ly, s.marker, color)
        if s.line:
            draw.line([right + 16, ly, right + 44, ly], fill=color, width=3)
        draw.text((right + 54, ly), s.label, fill="black", font=small, anchor="lm")
    return img


def save_plot(series: Sequence[Series], path: str | Path, title: str, log_x: bool = False) -> Path:
    img = draw_plot(series, title, log_x=log_x)
    return atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
