"""Compute kernels of the fast routed path: the folded first layer and cache-sized blocks.

Folding: an MLP's first Linear sees [z*, rel, cell]. That input is separable (z* per LR pixel, rel per
HR row / column, cell constant), so W1 x + b1 = A[lr pixel] + R_row[I] + R_col[J], with A a 1x1
projection of the features computed once per image. The remaining layers run on blocks of gathered
queries sized to stay in cache.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from pcsr_lightning.inference.cache import cpu_cache_budget
from pcsr_lightning.inference.workers import Workers
from pcsr_lightning.models.sampler import QueryGrid

# Render blocks. On CPU one layer's activations of a block fill the L2 caches of the threads' cores
# (``cache.cpu_cache_budget``), because BLAS slows down once a block spills the cache; thin MLPs want
# bigger blocks (per-call overhead). oneDNN tiles each matmul itself and keeps its speed on larger
# blocks, so its blocks hold ``ONEDNN_BLOCK_FACTOR`` times the budget. On GPU the work per launch is tiny,
# so blocks are large: 2^20 queries keep a 4K image's heavy pixels to 4 blocks at ~1.2 GB of activations.
# The measurements behind these choices: docs/performance.md ("Why the kernels are shaped this way").
MIN_BLOCK_QUERIES = 1024
ONEDNN_BLOCK_FACTOR = 2
FOLD_CHUNK_ROWS = 16384


# The classifier's dense pass (10-wide layers, feature-major) streams through memory and is bound by
# per-call overhead more than by the cache: fixed bands of 2^18 pixels, on every device.
CLASSIFIER_BAND_QUERIES = 1 << 18


CUDA_BLOCK_QUERIES = 1 << 20


# Hidden layers at least this wide run query-major (faster on CPU for CARN's 74 and 20); thinner ones,
# like the 10-wide classifiers, feature-major (faster there). Query-major layers run on oneDNN's fused
# linear + ReLU where the build has it (``uses_onednn``), measured faster than BLAS's sgemm on these widths
# (docs/performance.md).
QUERY_MAJOR_MIN_WIDTH = 16


@dataclass
class FoldedLayer:
    """First Linear of an MLP folded onto the LR grid: pre(I,J) = A[lr(I,J)] + row[I] + col[J].

    The three terms are rows of one table, so a block's pre-activations are one sum-of-3-rows gather
    (``embedding_bag``): one pass over memory instead of three index_selects and two adds, same sums in the
    same order (docs/performance.md).
    """

    table: torch.Tensor  # (h*w + H + W, hidden): A, then row (with the cell term and the bias), then col
    lr_pixels: int  # h*w
    hr_rows: int  # H

    @property
    def lr_term(self) -> torch.Tensor:
        return self.table[: self.lr_pixels]

    @property
    def row_term(self) -> torch.Tensor:
        return self.table[self.lr_pixels : self.lr_pixels + self.hr_rows]

    @property
    def col_term(self) -> torch.Tensor:
        return self.table[self.lr_pixels + self.hr_rows :]

    @staticmethod
    def build(
        linear: torch.nn.Linear,
        feat: torch.Tensor,
        grid: QueryGrid,
        workers: Workers | None = None,
        lr_ranges: list[tuple[int, int]] | None = None,
    ) -> FoldedLayer:
        """``workers``: the routed part's threads (``workers.Workers``); the product runs on them in
        row chunks. ``lr_ranges``: the [start, end) ranges of flat LR pixels to fold (all by default);
        rows of the table outside them are left unset, for pixels that are never gathered (the gate's
        skipped tiles)."""
        c = feat.shape[0]
        weight, bias = linear.weight, linear.bias
        w_feat, w_rel_row, w_rel_col = weight[:, :c], weight[:, c], weight[:, c + 1]
        const = bias + weight[:, c + 2] * grid.cell[0] + weight[:, c + 3] * grid.cell[1]
        lr_pixels, (hr_rows, hr_cols) = feat.shape[1] * feat.shape[2], grid.hr_size
        table = feat.new_empty(lr_pixels + hr_rows + hr_cols, weight.shape[0])
        # Straight into the (h*w, hidden) layout the gathers want, not (W @ F).t().contiguous() (a copy).
        # (h*w, c) is a view for both NCHW and channels_last features (reshape would copy channels_last).
        lr_feat = feat.permute(1, 2, 0).flatten(0, 1)
        ranges = [(0, lr_pixels)] if lr_ranges is None else lr_ranges
        onednn = lr_feat.is_contiguous() and uses_onednn(lr_feat)
        if onednn or (workers is not None and workers.n):
            # channels_last on oneDNN: cache-sized row chunks, each copied into the fresh table while
            # still in cache (faster than one MKL product into the table); on workers: a chunk per thread.
            w_feat = w_feat.contiguous() if onednn else w_feat.t()

            def chunk(span, local):
                r0, r1 = span
                if onednn:
                    table[r0:r1] = onednn_linear(lr_feat[r0:r1], w_feat, None, "none")
                else:
                    torch.mm(lr_feat[r0:r1], w_feat, out=table[r0:r1])

            spans = [(r0, min(end, r0 + FOLD_CHUNK_ROWS))
                     for start, end in ranges for r0 in range(start, end, FOLD_CHUNK_ROWS)]
            (workers or Workers(0)).run(chunk, spans)
        else:
            for start, end in ranges:
                torch.mm(lr_feat[start:end], w_feat.t(), out=table[start:end])
        # the grid is fp32; a low-precision model keeps its own dtype
        table[lr_pixels : lr_pixels + hr_rows] = grid.rel_row[:, None] * w_rel_row[None] + const[None]
        table[lr_pixels + hr_rows :] = grid.rel_col[:, None] * w_rel_col[None]
        return FoldedLayer(table, lr_pixels, hr_rows)

    def gather(self, rows: torch.Tensor, cols: torch.Tensor, lr_index: torch.Tensor) -> torch.Tensor:
        """(n, hidden) pre-activations of the HR pixels (rows, cols) whose nearest LR pixels are lr_index."""
        index = torch.stack((lr_index, rows + self.lr_pixels, cols + (self.lr_pixels + self.hr_rows)), 1)
        return F.embedding_bag(index, self.table, mode="sum")


class BlockedTail:
    """The MLP's layers after the folded first Linear, run one cache-sized block of queries at a time.

    Wide hidden layers run query-major, x (n, in) @ W^T, the layout the gathers produce; thin ones
    (``QUERY_MAJOR_MIN_WIDTH``) feature-major, W @ x. The output layer always runs feature-major,
    W @ x^T -> (out, n), the (3, n) layout the image wants (and faster than (n, hidden) @ (hidden, 3) on
    CPU: docs/performance.md). Activations of a block stay in cache, in buffers allocated once. With oneDNN (``onednn``,
    query-major only) every layer is one fused call and the output a transposed (n, out) view.
    """

    def __init__(
        self, mlp, block: int, like: torch.Tensor, query_major: bool | None = None, onednn: bool | None = None
    ):
        linears = mlp.linears
        if query_major is None:
            query_major = linears[0].out_features >= QUERY_MAJOR_MIN_WIDTH
        if onednn is None:
            onednn = uses_onednn(like)
        self.query_major = query_major
        self.onednn = onednn and query_major and len(linears) > 1
        self.last = None
        if self.onednn:  # (out, in) weights, ReLU fused into the hidden layers; outputs allocated by oneDNN
            self.hidden = [(lin.weight.contiguous(), lin.bias.contiguous()) for lin in linears[1:-1]]
            self.last = (linears[-1].weight.contiguous(), linears[-1].bias.contiguous())
        elif query_major:
            self.hidden = [(lin.weight.t().contiguous(), lin.bias.contiguous()) for lin in linears[1:-1]]
        else:
            self.hidden = [(lin.weight.contiguous(), lin.bias[:, None].contiguous()) for lin in linears[1:-1]]
        if len(linears) > 1 and not self.onednn:
            self.last = (linears[-1].weight.contiguous(), linears[-1].bias[:, None].contiguous())
        self.block, self.like, self.first_buffer = block, like, None
        self.first_width = linears[0].out_features
        self.buffers = [] if self.onednn else [like.new_empty(block * lin.out_features) for lin in linears[1:]]

    def first(self, n: int) -> torch.Tensor:
        """Buffer (n, hidden) for the folded first layer's pre-activation of n <= block queries."""
        if self.first_buffer is None:  # allocated on first use: the render gathers into its own
            self.first_buffer = self.like.new_empty(self.block, self.first_width)
        return self.first_buffer[:n]

    def __call__(self, pre: torch.Tensor) -> torch.Tensor:
        """pre: (n, hidden) first-layer pre-activation (clobbered) -> (out, n)."""
        if self.last is None:
            return pre.t()
        n = pre.shape[0]
        if self.onednn:
            x = pre.relu_()
            for weight, bias in self.hidden:
                x = onednn_linear(x, weight, bias, "relu")
            weight, bias = self.last
            return onednn_linear(x, weight, bias, "none").t()
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


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, post_op: str) -> torch.Tensor:
    """post_op(x @ weight^T + bias) in one oneDNN call; ``weight`` must be contiguous (a strided one
    is re-laid out on every call)."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, post_op, [], "")


@functools.lru_cache(maxsize=1)
def onednn_linear_available() -> bool:
    """Whether this PyTorch build has oneDNN's fused linear (its CPU builds do; it is not public API)."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        torch.ops.mkldnn._linear_pointwise
    except (AttributeError, RuntimeError):
        return False
    return True


def uses_onednn(like: torch.Tensor) -> bool:
    """The rule for the render's matmuls: oneDNN on CPU in float32 wherever the build has it."""
    return like.device.type == "cpu" and like.dtype == torch.float32 and onednn_linear_available()


def fill_dense_rows(folded: FoldedLayer, grid: QueryGrid, r0: int, r1: int, out: torch.Tensor) -> None:
    """First-layer pre-activation of every pixel of HR rows [r0, r1) into ``out`` ((r1-r0)*W, hidden)."""
    h_lr, w_lr = grid.lr_size
    hidden = folded.lr_term.shape[1]
    lr_rows = folded.lr_term.view(h_lr, w_lr, hidden).index_select(0, grid.row_index[r0:r1])
    dense = out.view(r1 - r0, -1, hidden)
    torch.index_select(lr_rows, 1, grid.col_index, out=dense)
    dense += folded.row_term[r0:r1, None]
    dense += folded.col_term[None]


def fill_dense_rect(folded: FoldedLayer, grid: QueryGrid, r0: int, r1: int, c0: int, c1: int,
                    out: torch.Tensor) -> None:
    """``fill_dense_rows`` on the HR columns [c0, c1) only: ``out`` ((r1-r0)*(c1-c0), hidden)."""
    h_lr, w_lr = grid.lr_size
    hidden = folded.lr_term.shape[1]
    cols = grid.col_index[c0:c1]
    lx0, lx1 = int(cols[0]), int(cols[-1]) + 1
    lr_rows = folded.lr_term.view(h_lr, w_lr, hidden)[:, lx0:lx1].index_select(0, grid.row_index[r0:r1])
    dense = out.view(r1 - r0, c1 - c0, hidden)
    torch.index_select(lr_rows, 1, cols - lx0, out=dense)
    dense += folded.row_term[r0:r1, None]
    dense += folded.col_term[None, c0:c1]


def block_queries(like: torch.Tensor, width: int) -> int:
    """Default queries per render block (activations like ``like``) for an MLP whose first layer is
    ``width`` wide."""
    if like.device.type == "cuda":
        return CUDA_BLOCK_QUERIES
    budget = cpu_cache_budget() * (ONEDNN_BLOCK_FACTOR if uses_onednn(like) else 1)
    return max(MIN_BLOCK_QUERIES, budget // (like.element_size() * width))


def row_bands(total_rows: int, width: int, max_queries: int):
    step = max(1, max_queries // max(1, width))
    for r0 in range(0, total_rows, step):
        yield r0, min(total_rows, r0 + step)
