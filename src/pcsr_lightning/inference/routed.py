"""Routed inference, the fast path users get: each HR pixel runs only the upsampler the router picked.

The first Linear of every MLP is folded onto the LR grid (see ``kernels.FoldedLayer``): the backbone and
the classifier run once per image (``prepare``), a k sweep re-routes (``route``) and renders (``render``)
without running them again; ``session.InferenceSession`` puts these steps together.
``reference.upscale_reference`` is the same routing written plainly.

On CPU the blocks and bands after the backbone run on ``routed_threads`` worker threads of one intra-op
thread each (``workers.Workers``: few long parallel phases instead of a barrier per short operator, which
a busy machine punishes); 0 runs them in order, each operator over torch's intra-op threads.

``skip_flat`` adds the flat-tile gate (``gate.py``): tiles it skips run none of the network, their HR
pixels get the bicubic upscale and class M.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pcsr_lightning.inference.gate import SkipPlan, encode_active, fill_skipped
from pcsr_lightning.inference.kernels import (
    CLASSIFIER_BAND_QUERIES,
    BlockedTail,
    FoldedLayer,
    block_queries,
    fill_dense_rect,
    fill_dense_rows,
    row_bands,
)
from pcsr_lightning.inference.refinement import refine_in_place
from pcsr_lightning.inference.router import (
    cost_list,
    decide_classes,
    heavy_share,
    route_adaptive,
    route_by_cost,
    skipped_share,
)
from pcsr_lightning.inference.tiling import encode_tiled
from pcsr_lightning.inference.workers import Workers, routed_threads
from pcsr_lightning.models.sampler import QueryGrid, output_size


def exact(fn):
    """No gradients and autocast off: the routed kernels own their buffers and keep the model's dtype,
    so a caller under mixed precision (validation in ``bf16-mixed`` training) runs them unchanged."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with torch.no_grad(), torch.autocast("cpu", enabled=False), torch.autocast("cuda", enabled=False):
            return fn(*args, **kwargs)

    return wrapper


@dataclass
class RoutedSR:
    sr: torch.Tensor  # (B,3,H,W), image range, not clamped
    classes: torch.Tensor  # (B,H,W) int64, 0 = heaviest upsampler, M = skipped by the gate
    num_classes: int  # M, which says which classes are heavy (``router.heavy_mask``)
    gate: SkipPlan | None = None  # the flat-tile gate's plan, None without it

    def heavy_share(self) -> float:
        """Share of all pixels (skipped ones included) on heavy upsamplers; skipped pixels are not heavy."""
        return heavy_share(self.classes, self.num_classes)

    def skipped_share(self) -> float | None:
        """Share of pixels the gate skipped; None without the gate."""
        return None if self.gate is None else skipped_share(self.classes, self.num_classes)


@dataclass
class Prepared:
    """Everything routing needs that does not depend on k: features and class probabilities.

    A k sweep prepares once per image and re-routes/renders for each k.
    """

    lr_norm: torch.Tensor  # (B,3,h,w)
    feat: torch.Tensor  # (B,C,h,w); zeros where the gate ran no backbone
    grid: QueryGrid
    scale: float
    probs: torch.Tensor | None  # (B,H*W,M); None when M == 1; zeros at pixels the gate skipped
    gate: SkipPlan | None = None


@exact
def prepare(
    model,
    lr: torch.Tensor,
    scale: float,
    max_queries: int = CLASSIFIER_BAND_QUERIES,
    feat: torch.Tensor | None = None,
    threads: int | None = None,
    gate: SkipPlan | None = None,
) -> Prepared:
    """Backbone once, classifier on every HR pixel in row bands of at most ``max_queries`` pixels
    (``threads``: the routed part's workers, ``workers.routed_threads``); with a ``gate``, both on its
    active tiles only."""
    lr_norm = model.normalize(lr)
    if feat is None:
        feat = model.encode(lr_norm) if gate is None else encode_active(model, lr_norm, gate, threads=threads)
    h, w = lr.shape[-2:]
    hh, ww = output_size((h, w), scale)
    grid = QueryGrid.build((h, w), (hh, ww), lr.device)
    probs = None
    if model.num_classes > 1 and gate is not None and not gate.all_active:
        probs = _gated_probabilities(model, feat, grid, gate, max_queries, threads)
    elif model.num_classes > 1:
        # Stored class-major (softmax over a short, contiguous leading dim), exposed as (B,H*W,M).
        class_major = lr.new_empty(lr.shape[0], model.num_classes, hh * ww)
        step = max(1, max_queries // ww)
        with Workers(routed_threads(threads, lr.device)) as workers:
            for i in range(lr.shape[0]):
                folded = FoldedLayer.build(model.classifier.linears[0], feat[i], grid, workers)

                def band(rows, local, i=i, folded=folded):
                    if "tail" not in local:  # one per thread: its buffers
                        local["tail"] = BlockedTail(model.classifier, step * ww, feat)
                    tail, (r0, r1) = local["tail"], rows
                    pre = tail.first((r1 - r0) * ww)
                    fill_dense_rows(folded, grid, r0, r1, pre)
                    torch.softmax(tail(pre), 0, out=class_major[i, :, r0 * ww : r1 * ww])

                workers.run(band, row_bands(hh, ww, max_queries))
        probs = class_major.transpose(1, 2)
    return Prepared(lr_norm, feat, grid, float(scale), probs, gate)


def _gated_probabilities(
    model, feat: torch.Tensor, grid: QueryGrid, gate: SkipPlan, max_queries: int, threads: int | None = None
) -> torch.Tensor:
    """The classifier on the HR rectangles of active tiles only (bands of at most ``max_queries``); (B,H*W,M),
    zeros elsewhere. The bands run on the routed part's workers."""
    m, (hh, ww) = model.num_classes, grid.hr_size
    class_major = feat.new_zeros(feat.shape[0], m, hh * ww)
    with Workers(routed_threads(threads, feat.device)) as workers:
        for i in range(feat.shape[0]):
            folded = FoldedLayer.build(model.classifier.linears[0], feat[i], grid, workers, gate.lr_ranges(i))
            image = class_major[i].view(m, hh, ww)
            bands = [
                (r0 + b0, r0 + b1, c0, c1)
                for r0, r1, c0, c1 in gate.active_rects(i, grid)
                for b0, b1 in row_bands(r1 - r0, c1 - c0, max_queries)
            ]

            def band(rect, local, folded=folded, image=image):
                if "tail" not in local:  # one per thread: its buffers
                    local["tail"] = BlockedTail(model.classifier, max(max_queries, ww), feat)
                tail, (r0, r1, c0, c1) = local["tail"], rect
                pre = tail.first((r1 - r0) * (c1 - c0))
                fill_dense_rect(folded, grid, r0, r1, c0, c1, pre)
                image[:, r0:r1, c0:c1] = torch.softmax(tail(pre), 0).view(m, r1 - r0, c1 - c0)

            workers.run(band, bands)
    return class_major.transpose(1, 2)


@exact
def route(model, prepared: Prepared, k: float = 0.0, adaptive: bool = False,
          threads: int | None = None) -> torch.Tensor:
    """(B,H*W) classes, 0 = heaviest; with the gate, M on the pixels it skipped."""
    if prepared.gate is not None:
        return _route_gated(model, prepared, k, adaptive, threads)
    if prepared.probs is None:
        b = prepared.lr_norm.shape[0]
        hh, ww = prepared.grid.hr_size
        return torch.zeros(b, hh * ww, dtype=torch.long, device=prepared.lr_norm.device)
    class_major = prepared.probs.transpose(1, 2)
    if not adaptive and class_major.is_contiguous():  # reduces over a contiguous class dim
        costs = cost_list(model, prepared.scale).to(class_major.device)
        b, _, q = class_major.shape
        classes = torch.empty(b, q, dtype=torch.long, device=class_major.device)
        # In bands, so the temporaries stay in cache (faster than the whole image at once)
        def band(q0, local):
            q1 = min(q, q0 + CLASSIFIER_BAND_QUERIES)
            route_by_cost(class_major[:, :, q0:q1], costs, k, dim=1, out=classes[:, q0:q1])

        with Workers(routed_threads(threads, class_major.device)) as workers:
            workers.run(band, range(0, q, CLASSIFIER_BAND_QUERIES))
        return classes
    return decide_classes(prepared.probs, cost_list(model, prepared.scale), k, adaptive)


def _route_gated(model, prepared: Prepared, k: float, adaptive: bool, threads: int | None = None) -> torch.Tensor:
    """``route`` without the gate, then class M on skipped pixels; ADM clusters the active pixels only."""
    skipped = prepared.gate.skipped
    if adaptive and prepared.probs is not None:
        classes = torch.full_like(skipped, model.num_classes, dtype=torch.long)
        for i in range(classes.shape[0]):
            active = ~skipped[i]
            if bool(active.any()):
                classes[i, active] = route_adaptive(prepared.probs[i, active])
        return classes
    ungated = Prepared(prepared.lr_norm, prepared.feat, prepared.grid, prepared.scale, prepared.probs)
    classes = route(model, ungated, k, adaptive, threads)
    return classes.masked_fill_(skipped, model.num_classes)


def _render_block(upsampler, folded: FoldedLayer, grid: QueryGrid, block_pixels: torch.Tensor, out: torch.Tensor,
                  tail: BlockedTail) -> None:
    """U_j on one block of its pixels (flat HR indices), added into ``out`` (3, H*W)."""
    w_lr, ww = grid.lr_size[1], grid.hr_size[1]
    # Indices per block, not per class: image-sized index arrays would make these passes memory-bound.
    rows = torch.div(block_pixels, ww, rounding_mode="floor")
    cols = block_pixels - rows * ww
    lr_index = grid.row_index.index_select(0, rows).mul_(w_lr).add_(grid.col_index.index_select(0, cols))
    pre = folded.gather(rows, cols, lr_index)
    if out.dtype in (torch.float16, torch.bfloat16):
        # torch's CPU index_add_ of these dtypes accumulates through a float copy of the whole of ``out``:
        # two workers adding disjoint blocks at once lose each other's sums. A gather, add and scatter of
        # the block's own pixels touches nothing else (the pixels of one class are distinct).
        out.index_copy_(1, block_pixels, out.index_select(1, block_pixels).add_(tail(pre)))
    else:
        out.index_add_(1, block_pixels, tail(pre))


def _render_class(upsampler, folded: FoldedLayer, grid: QueryGrid, pixels: torch.Tensor, out: torch.Tensor, block: int):
    """U_j on its pixels (flat HR indices, from one nonzero), added into ``out`` (3, H*W) block by block."""
    tail = BlockedTail(upsampler, min(block, pixels.numel()), folded.table)
    for p0 in range(0, pixels.numel(), block):
        _render_block(upsampler, folded, grid, pixels[p0 : p0 + block], out, tail)


@exact
def render(
    model,
    prepared: Prepared,
    classes: torch.Tensor,
    refine: bool = True,
    max_queries: int | None = None,
    threads: int | None = None,
) -> RoutedSR:
    """Each upsampler on its own pixels (one gather of indices per class, cache-sized blocks), + base, refinement.

    ``threads``: the workers the blocks and refinement bands run on (``workers.routed_threads``)."""
    grid = prepared.grid
    hh, ww = grid.hr_size
    b = classes.shape[0]
    # The base first, then each pixel's residual added in place: base + residual as one sum, with no
    # image-sized residual array and no extra pass. One long operator: it keeps torch's intra-op threads.
    # NCHW: a channels_last LR would make the base, the sums and the refinement strided.
    pred = F.interpolate(prepared.lr_norm.contiguous(), size=(hh, ww), mode="bilinear", align_corners=False)
    gate = prepared.gate
    flat = pred.view(b, 3, hh * ww)
    class_map = classes.view(b, hh, ww)
    with Workers(routed_threads(threads, pred.device)) as workers:
        if gate is not None and not gate.all_active:  # before refinement: its 3x3 means read these pixels
            fill_skipped(pred, prepared.lr_norm, gate, grid, model, workers)
        for i in range(b):
            for j, upsampler in enumerate(model.upsamplers):
                pixels = (classes[i] == j).nonzero().squeeze(1)
                if not pixels.numel():
                    continue
                ranges = None if gate is None or gate.all_active else gate.lr_ranges(i)
                folded = FoldedLayer.build(upsampler.linears[0], prepared.feat[i], grid, workers, ranges)
                # Inside the workers' scope the cache budget is one core's: a block per worker fits its L2.
                size = max_queries or block_queries(pred, folded.table.shape[1])

                def block(p0, local, upsampler=upsampler, folded=folded, pixels=pixels, size=size, out=flat[i]):
                    if "tail" not in local:  # one per thread: its buffers
                        local["tail"] = BlockedTail(upsampler, min(size, pixels.numel()), folded.table)
                    _render_block(upsampler, folded, grid, pixels[p0 : p0 + size], out, local["tail"])

                workers.run(block, range(0, pixels.numel(), size))
        if refine:
            # CPU: cache-sized row bands; GPU: the whole image in one band (a few launches, memory is there).
            refine_in_place(pred, class_map, model.num_classes, band=hh if pred.is_cuda else None, workers=workers,
                            skipped=gate is not None)
    pred += model.rgb_mean
    return RoutedSR(pred, class_map, model.num_classes, gate)


@exact
def backbone_features(model, lr: torch.Tensor, tile: int = 0, gate: SkipPlan | None = None,
                      threads: int | None = None) -> torch.Tensor:
    """The backbone's LR features; ``tile`` > 0 on LR tiles of that size (bounded memory, same result);
    with a ``gate`` on its windows only (small ones on ``threads`` workers, ``workers.routed_threads``)."""
    lr_norm = model.normalize(lr)
    if gate is not None:
        return encode_active(model, lr_norm, gate, tile, threads)
    return encode_tiled(model, lr_norm, tile) if tile > 0 else model.encode(lr_norm)


def forced_classes(prepared: Prepared, cls: int) -> torch.Tensor:
    """(B,H*W) classes sending every pixel to upsampler ``cls`` (0 = all-heavy, M - 1 = all-light); the
    gate's skipped pixels keep class M."""
    hh, ww = prepared.grid.hr_size
    classes = torch.full((prepared.lr_norm.shape[0], hh * ww), cls, dtype=torch.long, device=prepared.lr_norm.device)
    if prepared.gate is not None:
        classes.masked_fill_(prepared.gate.skipped, prepared.gate.skipped_class)
    return classes
