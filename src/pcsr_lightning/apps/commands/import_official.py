"""pcsr import-official: release .pth -> project checkpoint."""

from __future__ import annotations

import argparse

from pcsr_lightning.apps.commands.convert import add_format_flag, describe
from pcsr_lightning.inference.pretrained import card_if_folder
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.io.official import import_official
from pcsr_lightning.io.weights import load_model


def add_parser(sub) -> None:
    p = sub.add_parser("import-official",
                       help="convert a PCSR release checkpoint (FSRCNN, CARN, SRResNet; original or PCSR)")
    p.add_argument("--src", required=True, help="the release's .pth (e.g. save/carn-pcsr-phase1/iter_last.pth)")
    p.add_argument("--out", required=True, help="model file to write: .ckpt, .safetensors, or a folder (no suffix)")
    add_format_flag(p)
    p.add_argument("--trust-pickle", action="store_true",
                   help="load a file that needs full unpickling (can run code in it): only for files you trust")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    out = import_official(args.src, args.out, trust=args.trust_pickle, format=args.format)
    card_if_folder(out, args.format)
    loaded = load_model(out)
    extra = ""
    if loaded.is_pcsr:
        costs = ", ".join(f"{c:.4f}" for c in cost_list(loaded.model, 4.0).tolist())
        extra = f", cost list x4 (heavy..light) [{costs}]"
    print(f"wrote {out}: {describe(loaded)}{extra}")
    return 0
