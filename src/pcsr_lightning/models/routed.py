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
from pcsr_lightning.models.router import REFINE_BAND_ROWS, refine_in_place
from pcsr_lightning.models.router import route_adaptive, route_by_cost
from pcsr_lightning.models.sampler import QueryGrid, make_cell, make_coord, output_size, query_inputs
from pcsr_lightning.models.tiling import encode_tiled

# Render blocks. On CPU a block's activations stay in L2: 2 MiB of them, so 7,085 queries for CARN's
# 74-wide heavy upsampler, 26,214 for its 20-wide light one. Measured on 2 cores at 2K (CARN-PCSR): the
# heavy upsampler renders 1.6x faster in 8,192-query blocks than in 65,536 (BLAS on 74-wide layers drops
# from ~65 to ~35 GMAC/s once a block spills the cache); thin MLPs want bigger blocks (per-call overhead).
# On GPU the work per launch is tiny, so blocks are large (not yet measured: no GPU so far; 2^20 queries
# keep a 4K image's heavy pixels to 4 blocks at ~1.2 GB of activations). The dense classifier pass runs
# in row bands of its own.
CPU_BLOCK_FLOATS = 1 << 19
CUDA_BLOCK_QUERIES = 1 << 20
# Hidden layers at least this wide run query-major (faster on CPU for CARN's 74 and 20); thinner ones,
# like the 10-wide classifiers, feature-major (1.5x faster for CARN's classifier).
QUERY_MAJOR_MIN_WIDTH = 16
DEFAULT_BAND_QUERIES = 1 << 18


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
        # Straight into the (h*w, hidden) layout the gathers want: ~2x faster than (W @ F).t().contiguous().
        # (h*w, c) is a view for both NCHW and channels_last features (reshape copied channels_last: 7 ms/fold).
        lr_term = feat.permute(1, 2, 0).flatten(0, 1) @ w_feat.t()
        row_term = grid.rel_row[:, None] * w_rel_row[None] + const[None]
        col_term = grid.rel_col[:, None] * w_rel_col[None]
        dtype = lr_term.dtype  # the grid is fp32; a low-precision model keeps its own dtype
        return FoldedLayer(lr_term.contiguous(), row_term.to(dtype).contiguous(), col_term.to(dtype).contiguous())


class BlockedTail:
    """The MLP's layers after the folded first Linear, run one cache-sized block of queries at a time.

    Wide hidden layers run query-major, x (n, in) @ W^T, the layout the gathers produce; thin ones
    (``QUERY_MAJOR_MIN_WIDTH``) feature-major, W @ x. The output layer always runs feature-major,
    W @ x^T -> (out, n), the (3, n) layout the image wants (and ~10% faster than (n, hidden) @ (hidden, 3)
    on CPU). Activations of a block stay in cache, in buffers allocated once.
    """

    def __init__(self, mlp, block: int, like: torch.Tensor, query_major: bool | None = None):
        linears = mlp.linears
        if query_major is None:
            query_major = linears[0].out_features >= QUERY_MAJOR_MIN_WIDTH
        self.query_major = query_major
        if query_major:
            self.hidden = [(lin.weight.t().contiguous(), lin.bias.contiguous()) for lin in linears[1:-1]]
        else:
            self.hidden = [(lin.weight.contiguous(), lin.bias[:, None].contiguous()) for lin in linears[1:-1]]
        self.last = None
        if len(linears) > 1:
            self.last = (linears[-1].weight.contiguous(), linears[-1].bias[:, None].contiguous())
        self.first_buffer = like.new_empty(block, linears[0].out_features)
        self.buffers = [like.new_empty(block * lin.out_features) for lin in linears[1:]]

    def first(self, n: int) -> torch.Tensor:
        """Buffer (n, hidden) for the folded first layer's pre-activation of n <= block queries."""
        return self.first_buffer[:n]

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        """pre: (n, hidden) first-layer pre-activation (clobbered) -> (out, n)."""
        if self.last is None:
            return pre.t()
        n = pre.shape[0]
        if self.query_major:
            x = pre
            for (weight_t, bias), buffer in zip(self.hidden, self.buffers):
                x = torch.addmm(bias, x.relu_(), weight_t, out=buffer[: n * weight_t.shape[1]].view(n, -1))
            x = x.t()
        else:
            x = pre.t()
            for (weight, bias), buffer in zip(self.hidden, self.buffers):
                x = torch.addmm(bias, weight, x.relu_(), out=buffer[: weight.shape[0] * n].view(-1, n))
        weight, bias = self.last
        return torch.addmm(bias, weight, x.relu_(), out=self.buffers[-1][: weight.shape[0] * n].view(-1, n))


def _fill_dense_rows(folded: FoldedLayer, grid: QueryGrid, r0: int, r1: int, out: torch.Tensor) -> None:
    """First-layer pre-activation of every pixel of HR rows [r0, r1) into ``out`` ((r1-r0)*W, hidden)."""
    h_lr, w_lr = grid.lr_size
    hidden = folded.lr_term.shape[1]
    lr_rows = folded.lr_term.view(h_lr, w_lr, hidden).index_select(0, grid.row_index[r0:r1])
    dense = out.view(r1 - r0, -1, hidden)
    torch.index_select(lr_rows, 1, grid.col_index, out=dense)
    dense += folded.row_term[r0:r1, None]
    dense += folded.col_term[None]


def block_queries(device: torch.device, width: int) -> int:
    """Default queries per render block for an MLP whose first layer is ``width`` wide."""
    return CUDA_BLOCK_QUERIES if device.type == "cuda" else max(1024, CPU_BLOCK_FLOATS // width)


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


@torch.no_grad()
def prepare(
    model, lr: torch.Tensor, scale: float, max_queries: int = DEFAULT_BAND_QUERIES, feat: torch.Tensor | None = None
) -> Prepared:
    """Backbone once, classifier on every HR pixel in cache-sized row bands."""
    lr_norm = model.normalize(lr)
    if feat is None:
        feat = model.encode(lr_norm)
    h, w = lr.shape[-2:]
    hh, ww = output_size((h, w), scale)
    grid = QueryGrid.build((h, w), (hh, ww), lr.device)
    probs = None
    if model.num_classes > 1:
        # Stored class-major (softmax over a short leading dim is ~20x faster), exposed as (B,H*W,M).
        class_major = lr.new_empty(lr.shape[0], model.num_classes, hh * ww)
        step = max(1, max_queries // ww)
        tail = BlockedTail(model.classifier, step * ww, feat)
        for i in range(lr.shape[0]):
            folded = FoldedLayer.build(model.classifier.linears[0], feat[i], grid)
            for r0, r1 in _bands(hh, ww, max_queries):
                pre = tail.first((r1 - r0) * ww)
                _fill_dense_rows(folded, grid, r0, r1, pre)
                torch.softmax(tail(pre), 0, out=class_major[i, :, r0 * ww : r1 * ww])
        probs = class_major.transpose(1, 2)
    return Prepared(lr_norm, feat, grid, float(scale), probs)


@torch.no_grad()
def route(model, prepared: Prepared, k: float = 0.0, adaptive: bool = False) -> torch.Tensor:
    """(B,H*W) classes, 0 = heaviest."""
    if prepared.probs is None:
        b = prepared.lr_norm.shape[0]
        hh, ww = prepared.grid.hr_size
        return torch.zeros(b, hh * ww, dtype=torch.long, device=prepared.lr_norm.device)
    class_major = prepared.probs.transpose(1, 2)
    if not adaptive and class_major.is_contiguous():  # reducing over a strided class dim is ~10x slower
        return route_by_cost(class_major, model.cost_list(prepared.scale).to(class_major.device), k, dim=1)
    return decide_classes(prepared.probs, model.cost_list(prepared.scale), k, adaptive)


def _render_class(upsampler, folded: FoldedLayer, grid: QueryGrid, pixels: torch.Tensor, out: torch.Tensor, block: int):
    """U_j on its pixels (flat HR indices, from one nonzero), written into ``out`` (3, H*W) block by block."""
    w_lr, ww = grid.lr_size[1], grid.hr_size[1]
    tail = BlockedTail(upsampler, min(block, pixels.numel()), folded.lr_term)
    scratch = torch.empty_like(tail.first_buffer)
    for p0 in range(0, pixels.numel(), block):
        p1 = min(pixels.numel(), p0 + block)
        # Indices per block, not per class: image-sized index arrays would make these passes memory-bound.
        block_pixels = pixels[p0:p1]
        rows = torch.div(block_pixels, ww, rounding_mode="floor")
        cols = block_pixels - rows * ww
        lr_index = grid.row_index.index_select(0, rows).mul_(w_lr).add_(grid.col_index.index_select(0, cols))
        pre, extra = tail.first(p1 - p0), scratch[: p1 - p0]
        torch.index_select(folded.lr_term, 0, lr_index, out=pre)
        pre += torch.index_select(folded.row_term, 0, rows, out=extra)
        pre += torch.index_select(folded.col_term, 0, cols, out=extra)
        out.index_copy_(1, block_pixels, tail(pre))


@torch.no_grad()
def render(
    model, prepared: Prepared, classes: torch.Tensor, refine: bool = True, max_queries: int | None = None
) -> RoutedSR:
    """Each upsampler on its own pixels (one gather of indices per class, cache-sized blocks), + base, refinement."""
    grid = prepared.grid
    hh, ww = grid.hr_size
    b = classes.shape[0]
    residual = prepared.lr_norm.new_empty(b, 3, hh * ww)
    for i in range(b):
        for j, upsampler in enumerate(model.upsamplers):
            pixels = (classes[i] == j).nonzero().squeeze(1)
            if pixels.numel():
                folded = FoldedLayer.build(upsampler.linears[0], prepared.feat[i], grid)
                block = max_queries or block_queries(residual.device, folded.lr_term.shape[1])
                _render_class(upsampler, folded, grid, pixels, residual[i], block)
    # NCHW like the residual: a channels_last LR would make the base, the sum and the refinement strided
    # (at 4K: 88 vs 50 ms for base + sum alone).
    pred = F.interpolate(prepared.lr_norm.contiguous(), size=(hh, ww), mode="bilinear", align_corners=False)
    pred += residual.view(b, 3, hh, ww)
    class_map = classes.view(b, hh, ww)
    if refine:
        # CPU: cache-sized row bands; GPU: the whole image in one band (a few launches, memory is there).
        refine_in_place(pred, class_map, model.num_classes, band=hh if pred.is_cuda else REFINE_BAND_ROWS)
    pred += model.rgb_mean
    return RoutedSR(pred, class_map)


@torch.no_grad()
def backbone_features(model, lr: torch.Tensor, tile: int = 0) -> torch.Tensor:
    """The backbone's LR features; ``tile`` > 0 on LR tiles of that size (bounded memory, same result)."""
    lr_norm = model.normalize(lr)
    return encode_tiled(model, lr_norm, tile) if tile > 0 else model.encode(lr_norm)


@torch.no_grad()
def upscale(
    model,
    lr: torch.Tensor,
    scale: float,
    k: float = 0.0,
    adaptive: bool = False,
    refine: bool = True,
    max_queries: int | None = None,
    feat: torch.Tensor | None = None,
    tile: int = 0,
) -> RoutedSR:
    """Fast routed inference. ``feat`` may be given to reuse backbone features; ``tile`` > 0 runs the
    backbone on LR tiles of that size (bounded memory for huge images, same result)."""
    if feat is None:
        feat = backbone_features(model, lr, tile)
    prepared = prepare(model, lr, scale, max_queries or DEFAULT_BAND_QUERIES, feat)
    return render(model, prepared, route(model, prepared, k, adaptive), refine, max_queries)


def forced_classes(prepared: Prepared, cls: int) -> torch.Tensor:
    """(B,H*W) classes sending every pixel to upsampler ``cls`` (0 = all-heavy, M - 1 = all-light)."""
    hh, ww = prepared.grid.hr_size
    return torch.full((prepared.lr_norm.shape[0], hh * ww), cls, dtype=torch.long, device=prepared.lr_norm.device)


@torch.no_grad()
def render_forced(model, prepared: Prepared, cls: int, refine: bool = True) -> RoutedSR:
    """Every pixel on upsampler ``cls``: the two ends of the k curve."""
    return render(model, prepared, forced_classes(prepared, cls), refine)


@torch.no_grad()
def upscale_forced(model, lr: torch.Tensor, scale: float, cls: int, tile: int = 0) -> RoutedSR:
    """``render_forced`` from scratch; the classifier still runs, so timings compare with routed runs."""
    return render_forced(model, prepare(model, lr, scale, feat=backbone_features(model, lr, tile)), cls)


# ---------------------------------------------------------------- reference path


@torch.no_grad()
def upscale_reference(
    model,
    lr: torch.Tensor,
    scale: float,
    k: float = 0.0,
    adaptive: bool = False,
    refine: bool = True,
    chunk: int = 65536,
    feat: torch.Tensor | None = None,
) -> RoutedSR:
    """The release's chunked loop: per chunk, gather inputs and call each MLP on its own pixels.

    ``feat`` may be given (as for ``upscale``) to time the routed part alone."""
    lr_norm = model.normalize(lr)
    if feat is None:
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
