"""The flat-tile gate: PCSR without the backbone floor.

PCSR sends each HR pixel to a light or heavy upsampler, yet its backbone still runs on every LR pixel.
The gate looks at the LR image alone, tile by tile: a tile whose flatness score is below a threshold
runs neither the backbone, the classifier nor the upsamplers; its HR pixels get the bicubic upscale of
the LR (``bicubic_matrix``). The score is the largest |Laplacian| (any channel, image range [0, 1]) over
the tile and ``GATE_BORDER`` LR pixels around it. Both were chosen by measurement on validation photos
(``experiments/results/skip_flat.md``): within the same PSNR budget the Laplacian skipped as many tiles as
any other score tried (high-pass energy, std, range), and bicubic about twice as many as PCSR's bilinear
base, because it loses less on the tiles it fills.

The other tiles run PCSR as before, with the backbone on windows covering them plus a halo
(``plan_windows``). With the default halo, the backbone's receptive radius, each kept feature depends
only on pixels inside its window, as in ``tiling.encode_tiled``: the features equal the whole image's up
to the rounding of differently sized convolutions. A smaller halo trades that exactness for speed.

A pixel of a skipped tile gets class M (``skipped_class`` = the number of upsamplers) in class maps.

The fill of skipped tiles can instead be the model's fitted linear fill (``fill="linear"``,
``models.fill.LinearFill``, fitted by ``pcsr fit-fill``): per HR phase a 5x5 filter on the LR, bicubic
plus a least-squares correction, which loses far less than bicubic on the tiles it fills, so a higher
threshold stays within the same PSNR budget.

With a loss budget (``GateSpec.budget``, ``budget.py``) the threshold only bounds the candidates: the
budget decides per image how many of them, flattest first, are skipped.

The score can instead be the model's learned gate (``scorer="learned"``, ``models.gate.LearnedGate``,
trained by ``training.stages.GateStage``): its prediction of ``tile_residuals``, what PCSR adds over the
bicubic fill on each tile, in the same [0, 1] image units, compared with the threshold the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from pcsr_lightning.inference.spec import (
    DEFAULT_TILE,
    check_fill,
    check_gate_tile,
    check_halo,
    check_scorer,
    check_threshold,
)
from pcsr_lightning.inference.tiling import encode_tiled, receptive_radius
from pcsr_lightning.inference.workers import Workers, routed_threads
from pcsr_lightning.models.sampler import QueryGrid, output_size

GATE_BORDER = 2  # the reach of the bicubic filling a tile: its 4 taps span 2 LR pixels on each side
# A window's fixed cost in LR pixels when windows are planned: small separate windows merge unless that
# would encode more than this many extra pixels (per-call overhead of a small backbone).
WINDOW_OVERHEAD_PIXELS = 1024
ENCODE_BATCH_PIXELS = 1 << 18  # crops of one shape are encoded in batches of at most this many LR pixels
FILL_BLOCK_COLUMNS = 256  # HR columns per product of the bicubic fill (its weights: 4 taps a row)
BICUBIC_A = -0.75  # torch's (and OpenCV's) cubic kernel
# Analytic counts, in multiply-adds, of what the gate adds (FLOPs = 2 x MACs, the paper's rule):
# the Laplacian is a 5-tap stencil per channel (abs, max and pooling are free, as ReLU and pooling are);
# the bicubic fill of a skipped HR pixel a separable 4 + 4 taps per channel.
GATE_MACS_PER_LR_PIXEL = 5 * 3
FILL_MACS_PER_HR_PIXEL = (4 + 4) * 3


def laplacian_magnitude(lr: torch.Tensor) -> torch.Tensor:
    """(B,3,h,w) -> (B,h,w): |4x - up - down - left - right| (replicate padding), largest over channels."""
    p = F.pad(lr.float(), (1, 1, 1, 1), mode="replicate")
    c = p[..., 1:-1, 1:-1]
    lap = 4 * c - p[..., :-2, 1:-1] - p[..., 2:, 1:-1] - p[..., 1:-1, :-2] - p[..., 1:-1, 2:]
    return lap.abs().amax(1)


def flatness_scores(lr: torch.Tensor, tile: int, border: int = GATE_BORDER) -> torch.Tensor:
    """(B,3,h,w) LR -> (B, ceil(h/tile), ceil(w/tile)): each tile's largest |Laplacian| over the tile
    grown by ``border`` pixels (clipped to the image). A constant shift (the mean normalisation) leaves
    it unchanged."""
    tile = check_gate_tile(tile)
    mag = laplacian_magnitude(lr)[:, None]
    if border > 0:
        mag = F.max_pool2d(mag, 2 * border + 1, stride=1, padding=border)  # pads with -inf
    b, _, h, w = mag.shape
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    mag = F.pad(mag, (0, nx * tile - w, 0, ny * tile - h), value=-math.inf)
    return mag.view(b, ny, tile, nx, tile).amax((2, 4))


def fill_macs_per_hr_pixel(model, fill: str) -> int:
    return model.fill.macs_per_hr_pixel() if fill == "linear" else FILL_MACS_PER_HR_PIXEL


def tile_scores(model, lr: torch.Tensor, tile: int, scorer: str = "laplacian") -> torch.Tensor:
    """(B, ty, tx) scores of (B,3,h,w) ``lr`` (image range): ``flatness_scores``, or the learned gate's."""
    if check_scorer(scorer, model) == "laplacian":
        return flatness_scores(lr, tile)
    return model.gate.scores(model.normalize(lr), tile)  # the gate checks the tile as flatness_scores does


def gate_macs_per_lr_pixel(model, scorer: str) -> int:
    return model.gate.macs_per_lr_pixel() if scorer == "learned" else GATE_MACS_PER_LR_PIXEL


def tile_residuals(sr: torch.Tensor, cheap: torch.Tensor, lr_size: tuple[int, int], tile: int) -> torch.Tensor:
    """(B, ty, tx): the root mean square of ``sr - cheap`` ((B,3,H,W), image range) over the HR pixels
    whose nearest LR pixel lies in each LR tile (as the gate fills them), all channels: what PCSR adds over
    the cheap reconstruction there, the learned gate's target."""
    b, _, hh, ww = sr.shape
    h, w = lr_size
    grid = QueryGrid.build((h, w), (hh, ww), sr.device)
    ny, nx = math.ceil(h / tile), math.ceil(w / tile)
    ty, tx = grid.row_index // tile, grid.col_index // tile
    index = (ty[:, None] * nx + tx[None, :]).flatten()
    sq = (sr.float() - cheap.float()).square().mean(1).flatten(1)  # (B, H*W)
    sums = sq.new_zeros(b, ny * nx).index_add_(1, index, sq)
    counts = torch.bincount(index, minlength=ny * nx).to(sq)
    return (sums / counts.clamp(min=1)).sqrt().view(b, ny, nx)


def tile_spans(index: torch.Tensor, tile: int, tiles: int) -> list[tuple[int, int]]:
    """[start, end) of the HR rows (or columns) whose nearest LR row is in each tile; ``index`` is the
    grid's nearest-LR index per HR row, non-decreasing."""
    bounds = torch.searchsorted(index.cpu(), torch.arange(tiles + 1) * tile).tolist()
    return list(zip(bounds[:-1], bounds[1:]))


@dataclass(frozen=True)
class Window:
    """One backbone call's input ``crop`` (y0, y1, x0, x1 in LR pixels) of image ``image``, and the part
    ``keep`` of it whose features are used."""

    image: int
    crop: tuple[int, int, int, int]
    keep: tuple[int, int, int, int]

    @property
    def pixels(self) -> int:
        y0, y1, x0, x1 = self.crop
        return (y1 - y0) * (x1 - x0)


def _grow(keep, halo: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    (y0, y1, x0, x1), (h, w) = keep, size
    return max(0, y0 - halo), min(h, y1 + halo), max(0, x0 - halo), min(w, x1 + halo)


def _window_pixels(r0, r1, c0, c1, tile: int, halo: int, size: tuple[int, int]):
    """LR pixels a window encodes for tile rectangles [r0, r1) x [c0, c1) (numpy arrays or ints), halo
    included and clipped to the image, plus ``WINDOW_OVERHEAD_PIXELS``."""
    h, w = size
    y0, y1 = np.maximum(0, r0 * tile - halo), np.minimum(h, np.minimum(h, r1 * tile) + halo)
    x0, x1 = np.maximum(0, c0 * tile - halo), np.minimum(w, np.minimum(w, c1 * tile) + halo)
    return (y1 - y0) * (x1 - x0) + WINDOW_OVERHEAD_PIXELS


def _band_spans(cols: np.ndarray, rows: tuple[int, int], tile: int, halo: int, size: tuple[int, int]):
    """Column spans [c0, c1) (tiles) of one band of tile ``rows`` with ``cols`` (bool per tile column: any
    active tile in the band) and the pixels they encode. Two spans merge across a gap of g tiles when
    encoding it costs no more than a second window: band height x (g tile - 2 halo) <= the overhead."""
    active = np.flatnonzero(cols)
    if active.size == 0:
        return [], 0
    h = min(size[0], min(size[0], rows[1] * tile) + halo) - max(0, rows[0] * tile - halo)
    gaps = np.diff(active) - 1
    apart = np.flatnonzero(h * (gaps * tile - 2 * halo) > WINDOW_OVERHEAD_PIXELS)
    starts = np.concatenate([active[:1], active[apart + 1]])
    ends = np.concatenate([active[apart], active[-1:]]) + 1
    pixels = _window_pixels(rows[0], rows[1], starts, ends, tile, halo, size)
    return list(zip(starts.tolist(), ends.tolist())), int(pixels.sum())


def _merged_rects(active: np.ndarray, tile: int, halo: int, size: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """Tile rectangles covering every active tile: bands of tile rows, chosen by dynamic programming to
    encode the fewest pixels, each cut into column spans (``_band_spans``) and shrunk to its active rows."""
    n = active.shape[0]
    best = [0] + [None] * n
    cut = [0] * (n + 1)
    for b in range(1, n + 1):
        cols = np.zeros(active.shape[1], dtype=bool)
        for a in range(b - 1, -1, -1):  # band [a, b), grown upwards
            cols |= active[a]
            cost = best[a] + _band_spans(cols, (a, b), tile, halo, size)[1]
            if best[b] is None or cost < best[b]:
                best[b], cut[b] = cost, a
    rects, b = [], n
    while b > 0:
        a = cut[b]
        for c0, c1 in _band_spans(active[a:b].any(0), (a, b), tile, halo, size)[0]:
            rows = np.flatnonzero(active[a:b, c0:c1].any(1))  # the span's own rows, a bounding box
            rects.append((a + int(rows[0]), a + int(rows[-1]) + 1, c0, c1))
        b = a
    return rects


def plan_windows(active: torch.Tensor, lr_size: tuple[int, int], tile: int, halo: int, merge: bool = True
                 ) -> list[Window]:
    """Backbone windows covering the active tiles of (B, ty, tx) ``active``.

    ``merge``: rectangles of tiles (``_merged_rects``), planned to encode the fewest pixels (halos included,
    plus ``WINDOW_OVERHEAD_PIXELS`` a window), so neighbouring active tiles share their halos; an image with
    every tile active is one window, the whole image. Otherwise one window per active tile, all of the
    same size (shifted inwards at the image border, where the image's own padding is exact), batched.
    """
    h, w = lr_size
    windows = []
    for i, image in enumerate(active.cpu().numpy()):
        if merge:
            for r0, r1, c0, c1 in _merged_rects(image, tile, halo, (h, w)):
                keep = (r0 * tile, min(h, r1 * tile), c0 * tile, min(w, c1 * tile))
                windows.append(Window(i, _grow(keep, halo, (h, w)), keep))
        else:
            sy, sx = min(h, tile + 2 * halo), min(w, tile + 2 * halo)
            for ty, tx in zip(*np.nonzero(image)):
                y0, x0 = int(ty) * tile, int(tx) * tile
                cy, cx = min(max(0, y0 - halo), h - sy), min(max(0, x0 - halo), w - sx)
                windows.append(Window(i, (cy, cy + sy, cx, cx + sx), (y0, min(h, y0 + tile), x0, min(w, x0 + tile))))
    return windows


@dataclass
class CalibrationRun:
    """One PCSR run the loss budget made to calibrate itself (``name``: its part in the FLOPs): the backbone
    on ``backbone_pixels`` LR pixels, the classifier on ``classified`` HR pixels, upsampler j on
    ``counts[j]`` pixels, and the fill on ``filled`` HR pixels."""

    name: str
    backbone_pixels: int
    classified: int
    counts: list[int]
    filled: int = 0


@dataclass
class Budgeted:
    """What the loss budget measured and chose, per image of the batch: its ``budget`` (dB), the error
    level it assumed (``mse_level``, image range squared), the sampled tiles (``sampled``, (B, ty, tx)
    bool, run by PCSR), the estimated loss of what it skipped (``estimate``, dB, an upper estimate), and
    the calibration ``runs`` (sample crops, self-calibration) whose cost is part of the gate's."""

    budget: float
    mse_level: list[float]
    sampled: torch.Tensor
    estimate: list[float]
    runs: list[CalibrationRun]

    def counted_parts(self, convention: str, meter, fill_macs: int) -> dict[str, int]:
        """Each calibration run's work, counted as ``meter`` (a ``measure.meter.FlopsMeter``) counts a gated
        PCSR run: the backbone per LR pixel, the classifier and each upsampler per HR pixel, and the fill."""
        per_mac = {"paper": 2, "fvcore": 1}[convention]
        model, parts = meter.model, {}
        backbone = sum(meter.network_per_pixel(convention).values())
        for run in self.runs:
            total = round(backbone * run.backbone_pixels)
            if model.classifier is not None:
                total += run.classified * meter.per_query(model.classifier, convention)
            total += sum(n * meter.per_query(u, convention) for n, u in zip(run.counts, model.upsamplers))
            parts[run.name] = parts.get(run.name, 0) + total + per_mac * run.filled * fill_macs
        return parts


@dataclass
class SkipPlan:
    """What the gate decided for a batch of LR images: which tiles run PCSR and how the backbone covers them."""

    threshold: float
    tile: int
    halo: int
    skipped_class: int  # M, the class index of skipped pixels
    scores: torch.Tensor  # (B, ty, tx) flatness scores
    active: torch.Tensor  # (B, ty, tx) bool, True = runs PCSR
    windows: list[Window]
    lr_size: tuple[int, int]
    hr_size: tuple[int, int]
    skipped: torch.Tensor = field(repr=False)  # (B, H*W) bool, the HR pixels of skipped tiles
    scorer: str = "laplacian"  # what scored the tiles (``SCORERS``)
    gate_macs_per_lr_pixel: int = GATE_MACS_PER_LR_PIXEL  # the scorer's own work
    fill: str = "bicubic"  # what fills the skipped tiles (``FILLS``)
    fill_macs_per_hr_pixel: int = FILL_MACS_PER_HR_PIXEL  # the fill's work per skipped HR pixel
    budget: Budgeted | None = None  # with a loss budget: its calibration (``budget.plan_budget``)

    @property
    def all_active(self) -> bool:
        return bool(self.active.all())

    @property
    def encoded_pixels(self) -> int:
        """LR pixels the backbone runs on, halos and overlaps included (every image's when all are active)."""
        if self.all_active:
            return self.active.shape[0] * self.lr_size[0] * self.lr_size[1]
        return sum(win.pixels for win in self.windows)

    def skipped_pixels(self) -> int:
        return int(self.skipped.sum())

    def analytic_counts(self, convention: str) -> dict[str, int]:
        """The gate's own work and the fill's, counted by formula (see the constants, ``LinearFill``): FLOPs
        (2 x MACs) in the ``paper`` convention, MACs in ``fvcore``'s."""
        b, (h, w) = self.active.shape[0], self.lr_size
        per_mac = {"paper": 2, "fvcore": 1}[convention]
        return {"gate": per_mac * b * h * w * self.gate_macs_per_lr_pixel,
                f"{self.fill} fill": per_mac * self.skipped_pixels() * self.fill_macs_per_hr_pixel}

    def counted_parts(self, convention: str, meter) -> dict[str, int]:
        """``analytic_counts`` plus, with a loss budget, its calibration runs counted by ``meter`` (a
        ``measure.meter.FlopsMeter`` of the model): PCSR on the sampled crops and on the small image."""
        parts = self.analytic_counts(convention)
        if self.budget is not None:
            parts.update(self.budget.counted_parts(convention, meter, self.fill_macs_per_hr_pixel))
        return parts

    def hr_spans(self, grid: QueryGrid) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """Per tile row, per tile column: the HR rows and columns it covers."""
        ny, nx = self.active.shape[1:]
        return tile_spans(grid.row_index, self.tile, ny), tile_spans(grid.col_index, self.tile, nx)

    def active_rects(self, image: int, grid: QueryGrid) -> list[tuple[int, int, int, int]]:
        """HR rectangles (r0, r1, c0, c1) of runs of active tiles, one tile row at a time."""
        return _runs(self.active[image].cpu().tolist(), *self.hr_spans(grid))

    def skipped_rects(self, grid: QueryGrid) -> list[tuple[int, int, int, int, int]]:
        """(image, r0, r1, c0, c1): HR rectangles of runs of skipped tiles, one tile row at a time."""
        rows, cols = self.hr_spans(grid)
        skipped = (~self.active).cpu().tolist()
        return [(i, *rect) for i, image in enumerate(skipped) for rect in _runs(image, rows, cols)]

    def lr_ranges(self, image: int) -> list[tuple[int, int]]:
        """Flat LR pixel ranges of the tile rows holding an active tile (what the folds need)."""
        h, w = self.lr_size
        ranges: list[list[int]] = []
        for ty, any_active in enumerate(self.active[image].any(1).cpu().tolist()):
            if any_active:
                start, end = ty * self.tile * w, min(h, (ty + 1) * self.tile) * w
                if ranges and ranges[-1][1] == start:
                    ranges[-1][1] = end
                else:
                    ranges.append([start, end])
        return [(a, b) for a, b in ranges]


def _runs(flags: list[list[bool]], rows: list[tuple[int, int]], cols: list[tuple[int, int]]
          ) -> list[tuple[int, int, int, int]]:
    """HR rectangles of the runs of True tiles in each tile row of ``flags``; empty ones left out."""
    rects = []
    for ty, row in enumerate(flags):
        tx = 0
        while tx < len(row):
            if not row[tx]:
                tx += 1
                continue
            end = tx
            while end < len(row) and row[end]:
                end += 1
            rects.append((*rows[ty], cols[tx][0], cols[end - 1][1]))
            tx = end
    return [r for r in rects if r[0] < r[1] and r[2] < r[3]]


def plan_skip(model, lr: torch.Tensor, scale: float, threshold: float, tile: int = DEFAULT_TILE,
              halo: int | None = None, merge: bool = True, scorer: str = "laplacian", fill: str = "bicubic"
              ) -> SkipPlan:
    """The gate on (B,3,h,w) ``lr``: tiles scoring below ``threshold`` are skipped (0: none is).

    ``halo`` defaults to the backbone's receptive radius (exact features); ``merge`` see ``plan_windows``;
    ``scorer``: ``laplacian`` (``flatness_scores``) or ``learned`` (the model's gate, ``tile_scores``);
    ``fill``: ``bicubic`` or ``linear`` (the model's fitted fill, ``fill_skipped``).
    """
    check_fill(fill, model, scale)
    threshold = check_threshold(threshold)
    scores = tile_scores(model, lr, tile, scorer)
    return plan_active(model, lr, scale, scores, scores >= threshold, threshold, tile, halo, merge, scorer, fill)


def plan_active(model, lr: torch.Tensor, scale: float, scores: torch.Tensor, active: torch.Tensor, threshold: float,
                tile: int = DEFAULT_TILE, halo: int | None = None, merge: bool = True, scorer: str = "laplacian",
                fill: str = "bicubic") -> SkipPlan:
    """The plan that runs PCSR on the (B, ty, tx) ``active`` tiles of ``lr`` and fills the others: the
    threshold's (``plan_skip``) or one the loss budget chose (``budget.plan_budget``)."""
    halo = receptive_radius(model.backbone) if check_halo(halo) is None else halo
    h, w = lr.shape[-2:]
    hh, ww = output_size((h, w), scale)
    grid = QueryGrid.build((h, w), (hh, ww), lr.device)
    skipped = ~active[:, (grid.row_index // tile)][:, :, (grid.col_index // tile)]
    windows = [] if bool(active.all()) else plan_windows(active, (h, w), tile, halo, merge)
    return SkipPlan(threshold, tile, halo, model.num_classes, scores, active, windows, (h, w), (hh, ww),
                    skipped.reshape(lr.shape[0], hh * ww), scorer, gate_macs_per_lr_pixel(model, scorer), fill,
                    fill_macs_per_hr_pixel(model, fill))


def encode_active(model, lr_norm: torch.Tensor, plan: SkipPlan, tile: int = 0, threads: int | None = None
                  ) -> torch.Tensor:
    """(B,C,h,w) features, computed on the plan's windows only (zeros elsewhere); ``tile`` > 0 encodes
    each window on LR tiles (memory); ``threads``: the workers small windows run on (``encode_windows``).
    All tiles active: the whole image in one call, exactly as without the gate."""
    if plan.all_active:
        return encode_tiled(model, lr_norm, tile) if tile > 0 else model.encode(lr_norm)
    return encode_windows(model, lr_norm, plan.windows, tile, threads)


def window_batches(windows: list[Window]) -> list[list[Window]]:
    """Windows of one crop shape batched (at most ``ENCODE_BATCH_PIXELS`` a call), the largest first."""
    groups: dict[tuple[int, int], list[Window]] = {}
    for win in windows:
        y0, y1, x0, x1 = win.crop
        groups.setdefault((y1 - y0, x1 - x0), []).append(win)
    batches = []
    for (sh, sw), wins in groups.items():
        per_batch = max(1, ENCODE_BATCH_PIXELS // (sh * sw))
        batches += [wins[n0 : n0 + per_batch] for n0 in range(0, len(wins), per_batch)]
    return sorted(batches, key=lambda chunk: -batch_pixels(chunk))


def batch_pixels(chunk: list[Window]) -> int:
    return sum(w.pixels for w in chunk)


def encode_windows(model, lr_norm: torch.Tensor, windows: list[Window], tile: int = 0, threads: int | None = None
                   ) -> torch.Tensor:
    """(B,C,h,w) features of each window's ``keep`` part (zeros elsewhere), each window encoded once.

    Batches holding more than a worker's share of the pixels not yet encoded run first, largest first,
    each convolution split over the intra-op threads; the rest then run on ``workers.Workers`` (``threads``: see
    ``workers.routed_threads``), one intra-op thread each: small convolutions split over every thread
    end in a barrier apiece, which a busy neighbour process turns into long stalls."""
    encode = (lambda x: encode_tiled(model, x, tile)) if tile > 0 else model.encode
    layout = torch.channels_last if lr_norm.is_contiguous(memory_format=torch.channels_last) and not \
        lr_norm.is_contiguous() else torch.contiguous_format
    feat = lr_norm.new_zeros(lr_norm.shape[0], model.backbone.out_dim, *lr_norm.shape[-2:]).contiguous(
        memory_format=layout)

    def run(chunk: list[Window], local: dict | None = None) -> None:
        crops = [lr_norm[w.image : w.image + 1, :, w.crop[0] : w.crop[1], w.crop[2] : w.crop[3]] for w in chunk]
        batch = crops[0] if len(crops) == 1 else torch.cat(crops).contiguous(memory_format=layout)
        out = encode(batch)
        for n, w in enumerate(chunk):  # windows keep disjoint parts: threads never write the same pixels
            (y0, y1, x0, x1), (cy, _, cx, _) = w.keep, w.crop
            feat[w.image, :, y0:y1, x0:x1] = out[n, :, y0 - cy : y1 - cy, x0 - cx : x1 - cx]

    batches = window_batches(windows)
    n = routed_threads(threads, lr_norm.device)
    left = batch_pixels(windows)
    while batches and (n == 0 or batch_pixels(batches[0]) * n > left):  # more than a worker's share
        left -= batch_pixels(batches[0])
        run(batches.pop(0))
    with Workers(n) as workers:
        workers.run(run, batches)
    return feat


def bicubic_taps(n_in: int, n_out: int, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(n_out, 4) LR indices and weights of torch's bicubic resize along one axis (``F.interpolate(
    mode="bicubic", align_corners=False)`` with an output size): source x = (i + 0.5) n_in / n_out - 0.5,
    4 taps, the border replicated."""
    src = (torch.arange(n_out, dtype=torch.float64) + 0.5) * (n_in / n_out) - 0.5
    base = torch.floor(src)
    t = src - base

    def near(x):  # |x| <= 1
        return ((BICUBIC_A + 2) * x - (BICUBIC_A + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((BICUBIC_A * x - 5 * BICUBIC_A) * x + 8 * BICUBIC_A) * x - 4 * BICUBIC_A

    weights = torch.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], 1)
    taps = (base.long()[:, None] + torch.arange(-1, 3)[None]).clamp_(0, n_in - 1)
    return taps.to(device), weights.to(device=device, dtype=torch.float32)


def _banded(taps: torch.Tensor, weights: torch.Tensor, start: int, size: int, dtype) -> torch.Tensor:
    """(n, size) dense weights of n outputs on the inputs [start, start + size)."""
    return torch.zeros(taps.shape[0], size, dtype=torch.float32, device=taps.device).scatter_add_(
        1, taps - start, weights).to(dtype)


def bicubic_rect(lr: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor], cols: tuple[torch.Tensor, torch.Tensor]
                 ) -> torch.Tensor:
    """The bicubic upscale of (C,h,w) ``lr`` on the HR rows and columns whose taps are given (``bicubic_taps``
    sliced): (rows x LR rows) @ LR @ (LR columns x columns) on the LR pixels the taps reach, in blocks of
    ``FILL_BLOCK_COLUMNS`` columns so that the dense weights stay banded (a few times 4 taps wide)."""
    (ty, wy), (tx, wx) = rows, cols
    y0, y1 = int(ty.min()), int(ty.max()) + 1
    left = _banded(ty, wy, y0, y1 - y0, lr.dtype)
    x = lr[:, y0:y1]
    out = lr.new_empty(lr.shape[0], ty.shape[0], tx.shape[0])
    for c0 in range(0, tx.shape[0], FILL_BLOCK_COLUMNS):
        c1 = min(tx.shape[0], c0 + FILL_BLOCK_COLUMNS)
        x0, x1 = int(tx[c0:c1].min()), int(tx[c0:c1].max()) + 1
        right = _banded(tx[c0:c1], wx[c0:c1], x0, x1 - x0, lr.dtype)
        out[:, :, c0:c1] = left @ x[:, :, x0:x1] @ right.t()
    return out


def fill_skipped(pred: torch.Tensor, lr_norm: torch.Tensor, plan: SkipPlan, grid: QueryGrid, model=None,
                 workers: Workers | None = None) -> None:
    """Write the plan's fill of ``lr_norm`` into the skipped tiles of ``pred`` (B,3,H,W), in place, one
    run of skipped tiles of a tile row at a time (on ``workers`` when given: the runs are disjoint): the
    bicubic upscale, or ``model``'s linear fill."""
    if plan.fill == "linear":
        fill_linear(pred, lr_norm, plan, grid, model, workers)
        return
    (h, w), (hh, ww) = plan.lr_size, plan.hr_size
    taps_y, taps_x = bicubic_taps(h, hh, pred.device), bicubic_taps(w, ww, pred.device)
    images = [x.contiguous() for x in lr_norm]  # a channels_last image would be re-laid out per product

    def fill(rect, local=None) -> None:
        i, r0, r1, c0, c1 = rect
        pred[i, :, r0:r1, c0:c1] = bicubic_rect(images[i], (taps_y[0][r0:r1], taps_y[1][r0:r1]),
                                                (taps_x[0][c0:c1], taps_x[1][c0:c1]))

    (workers or Workers(0)).run(fill, plan.skipped_rects(grid))


def fill_linear(pred: torch.Tensor, lr_norm: torch.Tensor, plan: SkipPlan, grid: QueryGrid, model,
                workers: Workers | None = None) -> None:
    """``fill_skipped`` with ``model.fill`` (a ``LinearFill`` at the plan's integer scale): each run of
    skipped tiles covers whole LR pixels, so its HR pixels are the fill of those LR pixels, read from the
    image's replicate-padded LR in image range (the fill's own units) and normalised back."""
    fill, mean = model.fill, model.rgb_mean.to(lr_norm.dtype)
    s = fill.scale
    images = [fill.padded(x[None].contiguous() + mean) for x in lr_norm]

    def fill_rect(rect, local=None) -> None:
        i, r0, r1, c0, c1 = rect
        (y0, y1), (x0, x1) = (r0 // s, -(-r1 // s)), (c0 // s, -(-c1 // s))
        out = fill.valid(images[i][:, :, y0 : y1 + 2 * fill.radius, x0 : x1 + 2 * fill.radius]) - mean
        pred[i, :, r0:r1, c0:c1] = out[0, :, r0 - y0 * s : r1 - y0 * s, c0 - x0 * s : c1 - x0 * s]

    (workers or Workers(0)).run(fill_rect, plan.skipped_rects(grid))
