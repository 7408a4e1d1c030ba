"""FLOPs in the paper's convention (ClassSR / ARM / PCSR tables), counted with forward hooks.

2 x MACs for conv, deconv and linear; deconvolution at its output resolution; BatchNorm 2 x numel;
PReLU numel; ReLU, LeakyReLU, pixel shuffle, sampling, softmax and adds free.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

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
