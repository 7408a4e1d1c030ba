"""FLOPs in the paper's convention (ClassSR / ARM / PCSR tables), counted with forward hooks.

2 x MACs for conv, deconv and linear; deconvolution at its output resolution; BatchNorm 2 x numel;
PReLU numel; ReLU, LeakyReLU, pixel shuffle, sampling, softmax and adds free.
"""

from __future__ import annotations

import importlib.util
from collections import OrderedDict

import torch
from torch import nn

from pcsr_lightning.extras import need

FREE_LEAVES = (nn.ReLU, nn.LeakyReLU, nn.PixelShuffle, nn.Identity, nn.Sigmoid, nn.Softmax)


def _paper_leaf_flops(module: nn.Module, inp: torch.Tensor, out: torch.Tensor) -> int:
    if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
        kh, kw = module.kernel_size
        in_c = inp.shape[1]
        b, out_c, oh, ow = out.shape
        return 2 * kh * kw * (in_c // module.groups) * out_c * oh * ow * b
    if isinstance(module, nn.Linear):
        return 2 * (inp.numel() // inp.shape[-1]) * module.in_features * module.out_features
    if isinstance(module, nn.BatchNorm2d):
        return 2 * inp.numel()
    if isinstance(module, nn.PReLU):
        return inp.numel()
    if isinstance(module, FREE_LEAVES):
        return 0
    raise TypeError(f"paper FLOPs convention has no rule for {type(module).__name__}")


def paper_flops_by_module(module: nn.Module, *inputs: torch.Tensor) -> OrderedDict[str, int]:
    """Per-leaf paper-convention FLOPs of ``module(*inputs)``; a reused leaf counts once per call."""
    counts: OrderedDict[str, int] = OrderedDict()
    handles = []
    for name, leaf in module.named_modules():
        if next(leaf.children(), None) is not None:
            continue

        def hook(mod, args, out, name=name):
            counts[name] = counts.get(name, 0) + _paper_leaf_flops(mod, args[0], out)

        handles.append(leaf.register_forward_hook(hook))
    try:
        with torch.no_grad():
            module(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return counts


def paper_flops(module: nn.Module, *inputs: torch.Tensor) -> int:
    return sum(paper_flops_by_module(module, *inputs).values())


# ---------------------------------------------------------------- fvcore convention

CONVENTIONS = ("paper", "fvcore")
# fvcore (the ``flops`` extra) counts only its own convention, and is imported only when it counts (it is
# slow to import); the paper convention is the hooks above, torch alone.
FVCORE_PURPOSE = "the fvcore FLOPs convention"


def installed_conventions() -> tuple[str, ...]:
    """The conventions this install can count: the paper's always, fvcore's when fvcore is installed."""
    return CONVENTIONS if importlib.util.find_spec("fvcore") is not None else ("paper",)

# Ops counted as free (0) in the fvcore convention, listed on purpose so that nothing is skipped
# silently (``fvcore_analysis`` refuses any op without a rule):
# - sampler, router and refinement arithmetic (coordinates, nearest lookups, gathers/scatters,
#   softmax, argmax, 3x3 means of the refinement): bookkeeping around the MLPs, free as in the paper;
# - bilinear base / bilinear skip / grid sampling: interpolation, free in both conventions;
# - adds, subtractions (skips, mean normalisation), ReLU/LeakyReLU, pixel shuffle: free.
FREE_FVCORE_OPS = (
    "aten::add", "aten::add_", "aten::sub", "aten::rsub", "aten::mul", "aten::mul_", "aten::div", "aten::neg",
    "aten::softmax", "aten::_softmax", "aten::argmax", "aten::round", "aten::pow", "aten::where", "aten::any",
    "aten::leaky_relu", "aten::leaky_relu_", "aten::pixel_shuffle", "aten::flip", "aten::lt",
    "aten::upsample_bilinear2d", "aten::grid_sampler", "aten::avg_pool2d", "aten::max_pool2d",
    "aten::index_select", "aten::index_copy_", "aten::index_copy", "aten::scatter_add_", "aten::bincount",
    "aten::float", "aten::long", "aten::mean", "aten::sum", "aten::fill_", "aten::pad", "aten::replication_pad2d",
    "aten::meshgrid", "aten::reciprocal", "aten::bitwise_and", "aten::logical_not", "aten::logical_and", "aten::numel",
    "aten::__ior__", "aten::__or__", "aten::bitwise_or", "aten::clone",
)


def _first_input_numel(inputs, outputs) -> int:
    shape = need("fvcore.nn.jit_handles", FVCORE_PURPOSE).get_shape(inputs[0])
    count = 1
    for dim in shape:
        count *= dim
    return count


# PReLU: one multiply per element (fvcore skips it). BatchNorm at inference: a per-channel scale and
# shift = one multiply-add per element (fvcore's default says 2 for the affine case, i.e. FLOPs).
FVCORE_HANDLES = {"aten::prelu": _first_input_numel, "aten::batch_norm": _first_input_numel}


def _free(inputs, outputs) -> int:
    return 0


def fvcore_analysis(module: nn.Module, *inputs: torch.Tensor):
    """fvcore's FlopCountAnalysis with this project's handles; raises on an op with no rule."""
    analysis = need("fvcore.nn", FVCORE_PURPOSE).FlopCountAnalysis(module, inputs if len(inputs) != 1 else inputs[0])
    analysis.set_op_handle(**FVCORE_HANDLES)
    analysis.set_op_handle(**{op: _free for op in FREE_FVCORE_OPS})
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False).tracer_warnings("none")
    with torch.no_grad():
        analysis.total()
    unsupported = analysis.unsupported_ops()
    if unsupported:
        raise TypeError(f"fvcore convention has no rule for {sorted(unsupported)}: add a handle or declare it free")
    return analysis


def fvcore_macs_by_module(module: nn.Module, *inputs: torch.Tensor) -> OrderedDict[str, int]:
    """Per-leaf fvcore MACs of ``module(*inputs)``; ops run outside any leaf are listed under their parent."""
    analysis = fvcore_analysis(module, *inputs)
    per_module = analysis.by_module()
    leaves = {n for n, m in module.named_modules() if next(m.children(), None) is None}
    counts: OrderedDict[str, int] = OrderedDict()
    for name, _ in module.named_modules():
        if name in leaves:
            counts[name] = int(per_module.get(name, 0))
        else:
            own = int(per_module.get(name, 0)) - sum(
                int(per_module.get(child if not name else f"{name}.{child}", 0)) for child, _ in
                module.get_submodule(name).named_children()
            )
            if own:
                counts[name or "(top)"] = own
    return counts


def fvcore_macs(module: nn.Module, *inputs: torch.Tensor) -> int:
    return int(fvcore_analysis(module, *inputs).total())


def flops_by_module(module: nn.Module, *inputs: torch.Tensor, convention: str = "paper") -> OrderedDict[str, int]:
    """Per-leaf count in either convention (``paper`` FLOPs or ``fvcore`` MACs)."""
    if convention == "paper":
        return paper_flops_by_module(module, *inputs)
    if convention == "fvcore":
        return fvcore_macs_by_module(module, *inputs)
    raise ValueError(f"unknown FLOPs convention {convention!r}; expected one of {list(CONVENTIONS)}")


def count_flops(module: nn.Module, *inputs: torch.Tensor, convention: str = "paper") -> int:
    return sum(flops_by_module(module, *inputs, convention=convention).values())


def group_by_prefix(counts: dict[str, int], depth: int = 1) -> OrderedDict[str, int]:
    """Sum per-leaf counts into their ancestors ``depth`` levels down (``b1.c1.0`` -> ``b1`` at depth 1)."""
    grouped: OrderedDict[str, int] = OrderedDict()
    for name, value in counts.items():
        key = ".".join(name.split(".")[:depth])
        grouped[key] = grouped.get(key, 0) + value
    return grouped
