"""The exportable graphs: plain ``nn.Module``s over a loaded model's own submodules and weights.

``RoutedGraph`` is PCSR's routed inference with the routing inside the graph, at a cost knob k fixed when
it is built: backbone, classifier on every HR pixel, router (argmax p_j * cost_j^-k, ties to the cheaper
class), each upsampler on its own pixels only (``nonzero`` of its class, a gather of those pixels'
inputs, the MLP, a scatter back), refinement, + the bilinear base. Its arithmetic follows
``inference.routed`` step for step (the same folded first layer, the same sums in the same order), so the
graph in PyTorch gives the routed path's pixels; only what a runtime does differently moves them.

``DenseGraph`` runs every upsampler on every pixel and selects afterwards: for runtimes without
data-dependent shapes (``nonzero``), at the cost of every upsampler's work on every pixel.

``OriginalGraph`` is the plain network. Every graph maps N x 3 x h x w floats in [0, 1] to the SR image
clamped to [0, 1] (the values ``pcsr upscale`` writes to its PNGs before the 8-bit rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pcsr_lightning.inference.router import cost_list, cost_multipliers, heavy_mask
from pcsr_lightning.models.mlp import MLP
from pcsr_lightning.models.pcsr import PCSR

# The graph kinds of a PCSR export: the routed one (PCSR's saving) or dense select (every upsampler).
GRAPHS = ("routed", "dense")


def axis_coords(size: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``sampler.coord_axis`` of a size given as a tensor: the same float32 values, the constants computed
    in float64 and rounded once, as Python's float arithmetic does there."""
    r = 1.0 / size.double()
    return (2 * r).float() * index + (-1 + r).float()


def axis_sampler(lr_size: torch.Tensor, hr_size: int, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One axis of ``sampler.QueryGrid``: the nearest LR index of each HR position and the offset to it."""
    hr_index = torch.arange(hr_size, device=like.device, dtype=torch.float32)
    hr_total = hr_index[-1:] + 1
    coords = axis_coords(hr_total, hr_index)
    n = lr_size.float()
    nearest = torch.round(((coords + 1) * n - 1) / 2).long().clamp(min=0)
    nearest = torch.minimum(nearest, lr_size.long() - 1)
    lr_coords = axis_coords(lr_size, nearest.float())
    return nearest, (coords - lr_coords) * n


class FoldedFirst(nn.Module):
    """An MLP's first Linear folded onto the LR grid (``kernels.FoldedLayer``): the feature part as one
    product per LR pixel, the offset and cell parts per HR row and column."""

    def __init__(self, linear: nn.Linear, channels: int):
        super().__init__()
        self.linear = linear
        self.channels = channels

    def tables(self, lr_feat: torch.Tensor, rel_row: torch.Tensor, rel_col: torch.Tensor,
               cell: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(N*h*w, hidden) feature term, (H, hidden) row term (with the cell and the bias), (W, hidden)."""
        weight, bias, c = self.linear.weight, self.linear.bias, self.channels
        const = bias + weight[:, c + 2] * cell[0] + weight[:, c + 3] * cell[1]
        lr_term = torch.matmul(lr_feat, weight[:, :c].t())
        row_term = rel_row[:, None] * weight[:, c][None] + const[None]
        col_term = rel_col[:, None] * weight[:, c + 1][None]
        return lr_term, row_term, col_term


def mlp_tail(mlp: MLP, pre: torch.Tensor) -> torch.Tensor:
    """The layers after the first Linear, on its pre-activations (n, hidden) -> (n, out)."""
    x = pre
    for linear in mlp.linears[1:]:
        x = F.linear(torch.relu(x), linear.weight, linear.bias)
    return x


def refine_graph(pred: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``refinement.refine_in_place`` as a function: light interior pixels with a heavy one in their 3x3
    neighbourhood take the 3x3 mean, its sums in the same order (row below, row above; then columns)."""
    heavy = heavy_mask(classes, num_classes)
    near_heavy = F.max_pool2d(heavy[:, None].float(), 3, stride=1)[:, 0] > 0.5
    cond = near_heavy & ~heavy[:, 1:-1, 1:-1]
    vertical = pred[:, :, 1:-1] + pred[:, :, 2:]
    vertical = vertical + pred[:, :, :-2]
    box = vertical[:, :, :, :-2] + vertical[:, :, :, 1:-1]
    box = box + vertical[:, :, :, 2:]
    inner = torch.where(cond[:, None], box / 9, pred[:, :, 1:-1, 1:-1])
    border = F.pad(torch.ones_like(cond[:, None], dtype=pred.dtype), (1, 1, 1, 1)) < 0.5
    return torch.where(border, pred, F.pad(inner, (1, 1, 1, 1)))


class RoutedGraph(nn.Module):
    """PCSR at cost knob ``k`` and integer ``scale``: routing, per-class gather/scatter and refinement in
    the graph. Outputs the SR image (N,3,H,W) clamped to [0, 1] and, with ``class_map``, the classes
    (N,H,W) int64 (0 = the heaviest upsampler). ``dense``: every upsampler on every pixel, then a
    select by class (the same result, for runtimes without ``nonzero``)."""

    def __init__(self, model: PCSR, scale: int, k: float = 0.0, refine: bool = True, class_map: bool = False,
                 dense: bool = False):
        super().__init__()
        self.model = model
        self.scale = int(scale)
        self.k = float(k)
        self.refine = refine
        self.class_map = class_map
        self.dense = dense
        channels = model.backbone.out_dim
        self.upsampler_first = nn.ModuleList(FoldedFirst(u.linears[0], channels) for u in model.upsamplers)
        self.classifier_first = None if model.classifier is None else FoldedFirst(model.classifier.linears[0],
                                                                                   channels)
        # The router's multipliers cost_j^-k / max, float32 as ``route_by_cost`` applies them.
        self.register_buffer("weights", cost_multipliers(cost_list(model, float(scale)), k).float(),
                             persistent=False)

    def forward(self, lr: torch.Tensor):
        model, s = self.model, self.scale
        n, _, h, w = lr.shape
        hh, ww = h * s, w * s
        lr_norm = lr - model.rgb_mean
        feat = model.encode(lr_norm)
        lr_feat = feat.permute(0, 2, 3, 1).reshape(-1, feat.shape[1])  # (N*h*w, C)
        # Sizes as tensors (from aranges), so the graph keeps h and w dynamic.
        h_t = torch.arange(h, device=lr.device)[-1:] + 1
        w_t = torch.arange(w, device=lr.device)[-1:] + 1
        row_index, rel_row = axis_sampler(h_t, hh, lr)
        col_index, rel_col = axis_sampler(w_t, ww, lr)
        hh_t, ww_t = h_t * s, w_t * s
        # ``sampler.make_cell`` then ``QueryGrid``: float32(float32(2 / H) * h).
        cell = ((2.0 / hh_t.double()).float() * h_t.float(), (2.0 / ww_t.double()).float() * w_t.float())
        lr_rows = (torch.arange(n, device=lr.device) * (h * w))[:, None, None] + (row_index * w)[None, :, None]
        lr_index = (lr_rows + col_index[None, None, :]).reshape(-1)  # (N*H*W,) nearest LR pixel of each
        rows = torch.arange(hh, device=lr.device)[None, :, None].expand(n, hh, ww).reshape(-1)
        cols = torch.arange(ww, device=lr.device)[None, None, :].expand(n, hh, ww).reshape(-1)

        classes = self.route(lr_feat, lr_index, rows, cols, rel_row, rel_col, cell)
        residual = lr_feat.new_zeros(lr_index.shape[0], 3)
        for j, (upsampler, first) in enumerate(zip(model.upsamplers, self.upsampler_first)):
            lr_term, row_term, col_term = first.tables(lr_feat, rel_row, rel_col, cell)
            if self.dense:
                pre = lr_term.index_select(0, lr_index) + row_term.index_select(0, rows)
                out = mlp_tail(upsampler, pre + col_term.index_select(0, cols))
                residual = torch.where((classes == j)[:, None], out, residual)
                continue
            pixels = torch.nonzero(classes == j).reshape(-1)
            pre = lr_term.index_select(0, lr_index.index_select(0, pixels))
            pre = pre + row_term.index_select(0, rows.index_select(0, pixels))
            pre = pre + col_term.index_select(0, cols.index_select(0, pixels))
            residual = residual.index_put((pixels,), mlp_tail(upsampler, pre))
        base = F.interpolate(lr_norm, size=(hh, ww), mode="bilinear", align_corners=False)
        pred = base + residual.reshape(n, hh, ww, 3).permute(0, 3, 1, 2)
        class_image = classes.reshape(n, hh, ww)
        if self.refine and model.num_classes > 1:
            pred = refine_graph(pred, class_image, model.num_classes)
        sr = torch.clamp(pred + model.rgb_mean, 0, 1)
        return (sr, class_image) if self.class_map else sr

    def route(self, lr_feat, lr_index, rows, cols, rel_row, rel_col, cell) -> torch.Tensor:
        """(N*H*W,) classes: the classifier on every pixel, then ``router.route_by_cost``'s running max
        from the lightest class, replaced on a strict improvement only (ties stay with the cheaper)."""
        model = self.model
        if self.classifier_first is None:
            return torch.zeros_like(lr_index)
        lr_term, row_term, col_term = self.classifier_first.tables(lr_feat, rel_row, rel_col, cell)
        pre = lr_term.index_select(0, lr_index) + row_term.index_select(0, rows)
        probs = torch.softmax(mlp_tail(model.classifier, pre + col_term.index_select(0, cols)), -1)
        m = model.num_classes
        best = probs[:, m - 1] * self.weights[m - 1]
        classes = torch.full_like(lr_index, m - 1)
        for j in range(m - 2, -1, -1):
            score = probs[:, j] * self.weights[j]
            better = score > best
            classes = torch.where(better, torch.full_like(classes, j), classes)
            best = torch.where(better, score, best)
        return classes


class OriginalGraph(nn.Module):
    """The original network: ``network(lr - mean) + mean``, clamped to [0, 1]."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.model(lr), 0, 1)
