"""A checkpoint made of two: every part of BASE except the named PARTS, which come from DONOR.

When a re-trained model's PSNR/GFLOPs curve falls short of another's, swapping one part at a time
(``upsamplers.1`` or ``classifier``) and sweeping k again says which part the gap comes from.

``pcsr swap BASE DONOR --parts classifier --out swapped.ckpt``
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from pcsr_lightning.io.checkpoint import CheckpointError, LoadedModel, load_weights
from pcsr_lightning.models.parts import submodule


def swap_parts(base: LoadedModel, donor: LoadedModel, parts: Sequence[str], base_name: str = "base",
               donor_name: str = "donor") -> nn.Module:
    """``base.model`` with the weights of ``parts`` replaced by ``donor``'s (same widths required)."""
    if not parts:
        raise ValueError("name at least one part to swap (e.g. classifier, upsamplers.1)")
    if base.kind != donor.kind:
        raise CheckpointError(f"{base_name} holds a {base.kind} model, {donor_name} a {donor.kind} model")
    for path in parts:
        theirs = submodule(donor.model, path, donor_name)
        load_weights(submodule(base.model, path, base_name), theirs.state_dict(),
                     f"{donor_name} ({path})")
    return base.model
