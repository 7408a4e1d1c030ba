"""Compute kernels of the fast routed path: the folded first layer and cache-sized blocks.

Folding: an MLP's first Linear sees [z*, rel, cell]. That input is separable (z* per LR pixel, rel per
HR row / column, cell constant), so W1 x + b1 = A[lr pixel] + R_row[I] + R_col[J], with A a 1x1
projection of the features computed once per image. The remaining layers run on blocks of gathered
queries sized to stay in cache.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from pcsr_lightning.inference.cache import cpu_cache_budget
from pcsr_lightning.models.sampler import QueryGrid


# Render blocks. On CPU one layer's activations of a block fill the L2 caches of the threads' cores
# (``cache.cpu_cache_budget``): with 1 MiB of L2 per core and 2 threads, 7,085 queries for CARN's 74-wide
# heavy upsampler, 26,214 for its 20-wide light one. Measured on 2 cores at 2K (CARN-PCSR): the heavy
# upsampler renders 1.6x faster in 8,192-query blocks than in 65,536 (BLAS on 74-wide layers drops from
# ~65 to ~35 GMAC/s once a block spills the cache); thin MLPs want bigger blocks (per-call overhead).
# On GPU the work per launch is tiny, so blocks are large (not yet measured: no GPU so far; 2^20 queries
# keep a 4K image's heavy pixels to 4 blocks at ~1.2 GB of activations).
MIN_BLOCK_QUERIES = 1024


# The classifier's dense pass (10-wide layers, feature-major) streams through memory and is bound by
# per-call overhead more than by the cache: fixed bands of 2^18 pixels, on every device.
CLASSIFIER_BAND_QUERIES = 1 << 18


CUDA_BLOCK_QUERIES = 1 << 20


# Hidden layers at least this wide run query-major (faster on CPU for CARN's 74 and 20); thinner ones,
# like the 10-wide classifiers, feature-major (1.5x faster for CARN's classifier).
QUERY_MAJOR_MIN_WIDTH = 16


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


def fill_dense_rows(folded: FoldedLayer, grid: QueryGrid, r0: int, r1: int, out: torch.Tensor) -> None:
    """First-layer pre-activation of every pixel of HR rows [r0, r1) into ``out`` ((r1-r0)*W, hidden)."""
    h_lr, w_lr = grid.lr_size
    hidden = folded.lr_term.shape[1]
    lr_rows = folded.lr_term.view(h_lr, w_lr, hidden).index_select(0, grid.row_index[r0:r1])
    dense = out.view(r1 - r0, -1, hidden)
    torch.index_select(lr_rows, 1, grid.col_index, out=dense)
    dense += folded.row_term[r0:r1, None]
    dense += folded.col_term[None]


def block_queries(device: torch.device, width: int, element_size: int = 4) -> int:
    """Default queries per render block for an MLP whose first layer is ``width`` wide."""
    if device.type == "cuda":
        return CUDA_BLOCK_QUERIES
    return max(MIN_BLOCK_QUERIES, cpu_cache_budget() // (element_size * width))


def row_bands(total_rows: int, width: int, max_queries: int):
    step = max(1, max_queries // max(1, width))
    for r0 in range(0, total_rows, step):
        yield r0, min(total_rows, r0 + step)
