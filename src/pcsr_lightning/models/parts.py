"""A network's parts by dotted path (``backbone``, ``classifier``, ``upsamplers.1``): the one lookup that
training stages, warm starts and checkpoint swaps name parts with."""

from __future__ import annotations

from torch import nn


class UnknownPart(ValueError):
    """A dotted path the network does not have; the message lists the parts it has."""


def part_names(net: nn.Module) -> list[str]:
    """The top-level parts, e.g. ['backbone', 'classifier', 'upsamplers']."""
    return sorted(name for name, _ in net.named_children())


def submodule(net: nn.Module, path: str, owner: str) -> nn.Module:
    """The part at ``path``; ``owner`` (``stage stage1``, a file name) starts the error message."""
    try:
        return net.get_submodule(path)
    except AttributeError:
        raise UnknownPart(f"{owner}: no part {path!r} in this {type(net).__name__} (its parts: {part_names(net)})"
                          ) from None
