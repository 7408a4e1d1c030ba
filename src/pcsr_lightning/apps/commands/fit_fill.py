"""pcsr fit-fill: fit the flat-tile gate's linear fill on photos and write it into a copy of the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcsr_lightning.apps.commands.common import inputs_of
from pcsr_lightning.apps.commands.convert import add_format_flag, describe
from pcsr_lightning.apps.progress import Progress
from pcsr_lightning.inference.pretrained import card_if_folder
from pcsr_lightning.io.files import check_outputs
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS
from pcsr_lightning.io.weights import load_model, model_reads, output_files
from pcsr_lightning.training.fill import FIT_BELOW, fit_fill_model


def add_parser(sub) -> None:
    p = sub.add_parser("fit-fill", help="fit the flat-tile gate's linear fill (--skip-fill linear) on HR photos")
    p.add_argument("model", help="a PCSR model: .ckpt, .safetensors, a model folder or a training run")
    p.add_argument("photos", nargs="+", help="HR photos (files and/or folders of them), e.g. DIV2K's training HR; "
                                             "not the photos you will report on")
    p.add_argument("--out", required=True, help="model file to write, the fill included: .ckpt, .safetensors, or "
                                                "a folder (no suffix)")
    add_format_flag(p)
    p.add_argument("--scale", type=int, default=4, help="the integer scale the fill serves (default 4)")
    p.add_argument("--below", type=float, default=FIT_BELOW,
                   help=f"fit LR pixels whose 5x5 neighbourhood's largest |Laplacian| is below this (default "
                        f"{FIT_BELOW}): the flat pixels the gate skips")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, help="refuse photos larger than this")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (refused otherwise)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    src = Path(args.model)
    paths = [path for item in args.photos for path in inputs_of(Path(item), "to fit on")]
    check_outputs(output_files(args.out, args.format), inputs=[*model_reads(src), *map(Path, args.photos), *paths],
                  overwrite=args.overwrite)
    with Progress(len(paths), "fit-fill", unit="photo") as progress:
        def on_photo(path: Path, flat: int, pixels: int) -> None:
            progress.echo(f"{path.name}: {flat:,} of {pixels:,} LR pixels flat")
            progress.advance()

        out, fit = fit_fill_model(src, paths, args.out, args.scale, args.below, args.max_pixels, args.format,
                                  on_photo)
    card_if_folder(out, args.format)
    print(f"fitted on {fit['photos']} photo(s), {fit['flat_lr_pixels']:,} flat LR pixels: RMS error there "
          f"{fit['rms_bicubic']:.5f} (bicubic) -> {fit['rms_fitted']:.5f} (fitted), on the photos it was fitted on")
    print(f"wrote {out}: {describe(load_model(out))}, {fit['fill']}; use it with --skip-flat T --skip-fill linear")
    return 0
