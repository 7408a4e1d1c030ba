"""pcsr swap: a checkpoint made of two, every part of BASE except the named parts, which come from DONOR."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcsr_lightning.inference.pretrained import card_if_folder
from pcsr_lightning.io.files import check_outputs
from pcsr_lightning.io.swap import swap_parts
from pcsr_lightning.io.weights import load_model, model_reads, output_files, save_model


def add_parser(sub) -> None:
    p = sub.add_parser("swap", help="a checkpoint with the named parts (e.g. classifier) taken from another one")
    p.add_argument("base", type=Path, help="checkpoint that gives every part not named in --parts")
    p.add_argument("donor", type=Path, help="checkpoint that gives the parts named in --parts")
    p.add_argument("--parts", nargs="+", required=True, help="dotted paths, e.g. classifier upsamplers.1")
    p.add_argument("--out", type=Path, required=True, help=".ckpt, .safetensors, or a folder (no suffix)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    # before any work: never over one of its inputs, never inside a model folder read
    check_outputs(output_files(args.out), [*model_reads(args.base), *model_reads(args.donor)])
    base, donor = load_model(args.base), load_model(args.donor)
    model = swap_parts(base, donor, args.parts, str(args.base), str(args.donor))
    meta = {"swapped": {"base": args.base.name, "donor": args.donor.name, "parts": list(args.parts)}}
    save_model(args.out, model, base.config, meta)
    card_if_folder(args.out)
    print(f"{args.out}: {args.base} with {', '.join(args.parts)} from {args.donor}")
    return 0
