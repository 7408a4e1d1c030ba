"""pcsr convert: a model from any file the project reads, written as a .ckpt, a .safetensors or a model folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcsr_lightning.inference.pretrained import save_pretrained
from pcsr_lightning.io.files import check_outputs
from pcsr_lightning.io.weights import FORMATS, format_of, load_model, model_reads, output_files, save_model


def add_parser(sub) -> None:
    p = sub.add_parser("convert", help="convert a model between .ckpt, .safetensors and a model folder")
    p.add_argument("src", help="a .ckpt, a .safetensors, a model folder, a training run folder or its manifest.json")
    p.add_argument("--out", required=True, help="file or folder to write (the format from its suffix: "
                                                ".ckpt, .safetensors, no suffix = a model folder)")
    add_format_flag(p)
    p.add_argument("--license", default=None,
                   help="the weights' licence for a model folder's card and metadata (e.g. mit, cc-by-4.0; "
                        "default: the source's, else unknown)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (refused otherwise)")
    p.set_defaults(run=run)


def add_format_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=FORMATS, default=None,
                        help="ckpt, safetensors, or folder (config.json + model.safetensors + the model card "
                             "README.md); default: by the suffix of --out")


def describe(loaded) -> str:
    params = sum(p.numel() for p in loaded.model.parameters())
    extra = f", {loaded.model.num_classes} upsamplers" if loaded.is_pcsr else ""
    return f"{loaded.kind} model, {params:,} parameters{extra}"


def run(args: argparse.Namespace) -> int:
    src = Path(args.src)
    check_outputs(output_files(args.out, args.format), inputs=model_reads(src), overwrite=args.overwrite)
    loaded = load_model(src)
    loaded.meta = {**loaded.meta, "converted_from": src.name}
    if format_of(args.out, args.format) == "folder":  # a folder to share: with its model card
        out = save_pretrained(loaded, args.out, license=args.license)
    else:
        if args.license is not None:
            loaded.meta["license"] = args.license
        out = save_model(args.out, loaded.model, loaded.config, loaded.meta, args.format)
    print(f"wrote {out}: {describe(loaded)}")
    return 0
