"""Routed inference: each HR pixel runs only the upsampler the router picked for it.

Two implementations of the same routing:
- ``upscale`` (fast path): the first Linear of every MLP is folded onto the LR grid. Its input
  [z*, rel, cell] is separable (z* per LR pixel, rel per HR row / column, cell constant), so
  W1 x + b1 = A[lr pixel] + R_row[I] + R_col[J], with A a 1x1 projection of the features computed once.
  One gather and one scatter per class over the whole image; chunks only bound memory.
- ``upscale_reference``: the straightforward chunked loop of the release (per-chunk gathers and MLP
  calls), kept as the oracle for tests and the baseline for ``pcsr bench``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pcsr_lightning.models.router import refine as refine_pixels
from pcsr_lightning.models.router import route_adaptive, route_by_cost
from pcsr_lightning.models.sampler import QueryGrid, make_cell, make_coord, output_size, query_inputs

DEFAULT_MAX_QUERIES = 1 << 21


@dataclass
class RoutedSR:
    sr: torch.Tensor  # (B,3,H,W), image range, not clamped
    classes: torch.Tensor  # (B,H,W) int64, 0 = heaviest upsampler

    def heavy_share(self) -> float:
        return float((self.classes == 0).float().mean())


def cost_list(model, scale: float) -> torch.Tensor:
    """cost_j = FLOPs(B) + FLOPs(U_j) at a 16x16 LR input, normalised to sum 1 (paper convention).

    Depends on the architecture only; ``PCSR.cost_list`` caches it per scale.
    """
    from pcsr_lightning.flops import paper_flops

    device = model.rgb_mean.device
    queries = output_size((16, 16), scale)
    backbone = paper_flops(model.backbone, torch.zeros(1, 3, 16, 16, device=device))
    costs = torch.tensor(
        [backbone + 2 * queries[0] * queries[1] * u.macs_per_query() for u in model.upsamplers],
        dtype=torch.float64,
    )
    return (costs / costs.sum()).float()


def decide_classes(probs: torch.Tensor, costs: torch.Tensor, k: float, adaptive: bool) -> torch.Tensor:
    """Per image: (B,Q,M) probabilities -> (B,Q) classes."""
    if adaptive:
        return torch.stack([route_adaptive(p) for p in probs])
    return route_by_cost(probs, costs.to(probs.device), k)


# ---------------------------------------------------------------- fast path


@dataclass
class FoldedLayer:
    """First Linear of an MLP folded onto the LR grid: pre(I,J) = A[lr(I,J)] + row[I] + col[J]."""

    lr_term: torch.Tensor  # (h*w, hidden)
    row_term: torch.Tensor  # (H, hidden), includes the cell term and the bias
    col_term: torch.Tensor  # (W, hidden)

    @staticmethod
    def build(linear: torch.nn.Linear, feat: torch.Tensor, grid: QueryGrid) -> FoldedLayer:
        c = feat.shape[0]
        weight, bias = linear.weight, linear.bias
        w_feat, w_rel_row, w_rel_col = weight[:, :c], weight[:, c], weight[:, c + 1]
        const = bias + weight[:, c + 2] * grid.cell[0] + weight[:, c + 3] * grid.cell[1]
        lr_term = feat.reshape(c, -1).t() @ w_feat.t()
        row_term = grid.rel_row[:, None] * w_rel_row[None] + const[None]
        col_term = grid.rel_col[:, None] * w_rel_col[None]
        return FoldedLayer(lr_term, row_term, col_term)


def _run_tail(mlp, hidden: torch.Tensor) -> torch.Tensor:
    """The MLP's layers after the folded first Linear (its ReLU included, if it has hidden layers)."""
    x = hidden
    for layer in list(mlp.layers)[1:]:
        x = layer(x)
    return x


def _query_pixels(mlp, folded: FoldedLayer, grid: QueryGrid, pixels: torch.Tensor) -> torch.Tensor:
    """MLP outputs for flat HR pixel indices ``pixels`` (N,) -> (N, out)."""
    width = grid.hr_size[1]
    rows, cols = pixels // width, pixels % width
    lr_index = grid.row_index[rows] * grid.lr_size[1] + grid.col_index[cols]
    hidden = folded.lr_term.index_select(0, lr_index)
    hidden += folded.row_term.index_select(0, rows)
    hidden += folded.col_term.index_select(0, cols)
    return _run_tail(mlp, hidden)


def _dense_rows(mlp, folded: FoldedLayer, grid: QueryGrid, r0: int, r1: int) -> torch.Tensor:
    """MLP outputs for every pixel of HR rows [r0, r1): ((r1-r0)*W, out)."""
    h_lr, w_lr = grid.lr_size
    lr_rows = folded.lr_term.view(h_lr, w_lr, -1).index_select(0, grid.row_index[r0:r1])
    hidden = lr_rows.index_select(1, grid.col_index)
    hidden = hidden + folded.row_term[r0:r1, None] + folded.col_term[None]
    return _run_tail(mlp, hidden.view(-1, hidden.shape[-1]))


def _bands(total_rows: int, width: int, max_queries: int):
    step = max(1, max_queries // max(1, width))
    for r0 in range(0, total_rows, step):
        yield r0, min(total_rows, r0 + step)


@dataclass
class Prepared:
    """Everything routing needs that does not depend on k: features and class probabilities.

    A k sweep prepares once per image and re-routes/renders for each k.
    """

    lr_norm: torch.Tensor  # (B,3,h,w)
    feat: torch.Tensor  # (B,C,h,w)
    grid: QueryGrid
    scale: float
    probs: torch.Tensor | None  # (B,H*W,M); None when M == 1


def prepare(
    model, lr: torch.Tensor, scale: float, max_queries: int = DEFAULT_MAX_QUERIES, feat: torch.Tensor | None = None
) -> Prepared:
    """Backbone once, classifier on every HR pixel (row bands bound memory)."""
    lr_norm = model.normalize(lr)
    if feat is None:
        feat = model.encode(lr_norm)
    h, w = lr.shape[-2:]
    hh, ww = output_size((h, w), scale)
    grid = QueryGrid.build((h, w), (hh, ww), lr.device)
    probs = None
    if model.num_classes > 1:
        probs = lr.new_empty(lr.shape[0], hh * ww, model.num_classes)
        for i in range(lr.shape[0]):
            folded = FoldedLayer.build(model.classifier.linears[0], feat[i], grid)
            for r0, r1 in _bands(hh, ww, max_queries):
                logits = _dense_rows(model.classifier, folded, grid, r0, r1)
                probs[i, r0 * ww : r1 * ww] = F.softmax(logits, -1)
    return Prepared(lr_norm, feat, grid, float(scale), probs)


def route(model, prepared: Prepared, k: float = 0.0, adaptive: bool = False) -> torch.Tensor:
    """(B,H*W) classes, 0 = heaviest."""
    if prepared.probs is None:
        b = prepared.lr_norm.shape[0]
        hh, ww = prepared.grid.hr_size
        return torch.zeros(b, hh * ww, dtype=torch.long, device=prepared.lr_norm.device)
    return decide_classes(prepared.probs, model.cost_list(prepared.scale), k, adaptive)


def render(
    model, prepared: Prepared, classes: torch.Tensor, refine: bool = True, max_queries: int = DEFAULT_MAX_QUERIES
) -> RoutedSR:
    """Each upsampler on its own pixels (one gather and one scatter per class), + base, refinement."""
    grid = prepared.grid
    hh, ww = grid.hr_size
    b = classes.shape[0]
    residual = prepared.lr_norm.new_empty(b, hh * ww, 3)
    for i in range(b):
        for j, upsampler in enumerate(model.upsamplers):
            pixels = (classes[i] == j).nonzero().squeeze(1)
            if pixels.numel() == 0:
                continue
            folded = FoldedLayer.build(upsampler.linears[0], prepared.feat[i], grid)
            for p0 in range(0, pixels.numel(), max_queries):
                chunk = pixels[p0 : p0 + max_queries]
                residual[i].index_copy_(0, chunk, _query_pixels(upsampler, folded, grid, chunk))
    base = F.interpolate(prepared.lr_norm, size=(hh, ww), mode="bilinear", align_corners=False)
    pred = residual.view(b, hh, ww, 3).permute(0, 3, 1, 2) + base
    class_map = classes.view(b, hh, ww)
    if refine:
        pred = refine_pixels(pred, class_map, model.num_classes)
    return RoutedSR(pred + model.rgb_mean, class_map)


def upscale(
    model,
    lr: torch.Tensor,
    scale: float,
    k: float = 0.0,
    adaptive: bool = False,
    refine: bool = True,
    max_queries: int = DEFAULT_MAX_QUERIES,
    feat: torch.Tensor | None = None,
) -> RoutedSR:
    """Fast routed inference. ``feat`` may be given to reuse backbone features (tiling)."""
    prepared = prepare(model, lr, scale, max_queries, feat)
    return render(model, prepared, route(model, prepared, k, adaptive), refine, max_queries)


# ---------------------------------------------------------------- reference path


def upscale_reference(
    model,
    lr: torch.Tensor,
    scale: float,
    k: float = 0.0,
    adaptive: bool = False,
    refine: bool = True,
    chunk: int = 65536,
) -> RoutedSR:
    """The release's chunked loop: per chunk, gather inputs and call each MLP on its own pixels."""
    lr_norm = model.normalize(lr)
    feat = model.encode(lr_norm)
    b, _, h, w = lr.shape
    hh, ww = output_size((h, w), scale)
    q = hh * ww
    coord = make_coord((hh, ww), lr.device)[None]
    cell = make_cell((hh, ww), q, lr.device)[None]
    m = model.num_classes
    probs = lr.new_empty(b, q, m)
    for l in range(0, q, chunk):
        probs[:, l : l + chunk] = model.class_probabilities(
            query_inputs(feat, coord[:, l : l + chunk].expand(b, -1, -1), cell[:, l : l + chunk].expand(b, -1, -1))
        )
    if m > 1:
        classes = decide_classes(probs, model.cost_list(scale), k, adaptive)
    else:
        classes = torch.zeros(b, q, dtype=torch.long, device=lr.device)
    pred = lr.new_zeros(b, q, 3)
    for i in range(b):
        for l in range(0, q, chunk):
            r = min(q, l + chunk)
            flags = classes[i, l:r]
            for j, upsampler in enumerate(model.upsamplers):
                idx = torch.where(flags == j)[0]
                if len(idx):
                    inputs = query_inputs(feat[i : i + 1], coord[:, l:r][:, idx], cell[:, l:r][:, idx])
                    pred[i, l + idx] = upsampler(inputs)[0]
            pred[i, l:r] += model.bilinear_base(lr_norm[i : i + 1], coord[:, l:r])[0]
    pred = pred.transpose(1, 2).reshape(b, 3, hh, ww)
    class_map = classes.view(b, hh, ww)
    if refine:
        pred = refine_pixels(pred, class_map, m)
    return RoutedSR(pred + model.rgb_mean, class_map)
