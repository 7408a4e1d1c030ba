"""A checkpoint made of two: every part of BASE except the named PARTS, which come from DONOR.

When a re-trained model's PSNR/GFLOPs curve falls short of another's, swapping one part at a time
(``upsamplers.1`` or ``classifier``) and sweeping k again says which part the gap comes from.

``python -m pcsr_lightning.evaluation.swap BASE DONOR --parts classifier --out swapped.ckpt``
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from torch import nn

from pcsr_lightning.io.checkpoint import CheckpointError, LoadedModel, load_checkpoint, load_weights, save_checkpoint


def part(model: nn.Module, path: str, where: str) -> nn.Module:
    try:
        return model.get_submodule(path)
    except AttributeError:
        names = sorted(n for n, _ in model.named_children())
        raise CheckpointError(f"{where} has no part {path!r} (its parts: {names})") from None


def swap_parts(base: LoadedModel, donor: LoadedModel, parts: Sequence[str], base_name: str = "base",
               donor_name: str = "donor") -> nn.Module:
    """``base.model`` with the weights of ``parts`` replaced by ``donor``'s (same widths required)."""
    if not parts:
        raise ValueError("name at least one part to swap (e.g. classifier, upsamplers.1)")
    if base.kind != donor.kind:
        raise CheckpointError(f"{base_name} holds a {base.kind} model, {donor_name} a {donor.kind} model")
    for path in parts:
        theirs = part(donor.model, path, donor_name)
        load_weights(part(base.model, path, base_name), theirs.state_dict(), f"{donor_name} ({path})")
    return base.model


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", type=Path, help="checkpoint that gives every part not named in --parts")
    parser.add_argument("donor", type=Path, help="checkpoint that gives the parts named in --parts")
    parser.add_argument("--parts", nargs="+", required=True, help="dotted paths, e.g. classifier upsamplers.1")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        base, donor = load_checkpoint(args.base), load_checkpoint(args.donor)
        model = swap_parts(base, donor, args.parts, str(args.base), str(args.donor))
    except (CheckpointError, FileNotFoundError, ValueError) as err:
        raise SystemExit(f"error: {err}") from None
    meta = {"swapped": {"base": str(args.base), "donor": str(args.donor), "parts": list(args.parts)}}
    save_checkpoint(args.out, model, base.config, meta)
    print(f"{args.out}: {args.base} with {', '.join(args.parts)} from {args.donor}")


if __name__ == "__main__":
    main()
