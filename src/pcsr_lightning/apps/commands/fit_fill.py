"""pcsr fit-fill: fit the flat-tile gate's linear fill on photos and write it into a copy of the model."""

from __future__ import annotations

import argparse
from pathlib import Path

from pcsr_lightning.apps.commands.common import inputs_of
from pcsr_lightning.apps.commands.convert import add_format_flag, describe
from pcsr_lightning.apps.progress import Progress
from pcsr_lightning.data.bicubic import make_pair
from pcsr_lightning.inference.pretrained import card_if_folder
from pcsr_lightning.io.files import check_outputs
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, read_image
from pcsr_lightning.io.weights import load_model, model_reads, output_files, save_model
from pcsr_lightning.training.fill import FIT_BELOW, FillStatistics

FILL_TARGET = "pcsr_lightning.models.LinearFill"


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
    if args.scale < 2:
        raise ValueError(f"--scale must be an integer >= 2, got {args.scale}")
    if not args.below > 0:
        raise ValueError(f"--below must be > 0, got {args.below}")
    src = Path(args.model)
    paths = [path for item in args.photos for path in inputs_of(Path(item), "to fit on")]
    check_outputs(output_files(args.out, args.format), inputs=[*model_reads(src), *map(Path, args.photos), *paths],
                  overwrite=args.overwrite)
    loaded = load_model(src)
    if not loaded.is_pcsr:
        raise ValueError(f"{src}: an original network has no flat-tile gate to fill for; give a PCSR model")
    stats = FillStatistics(args.scale, below=args.below)
    with Progress(len(paths), "fit-fill", unit="photo") as progress:
        for path in paths:
            hr, lr = make_pair(read_image(path, args.max_pixels), args.scale)
            added = stats.add(lr[None], hr[None])
            progress.echo(f"{path.name}: {added // 3:,} of {lr.shape[-2] * lr.shape[-1]:,} LR pixels flat")
            progress.advance()
    solution = stats.correction()
    fill = stats.fill_of(solution)
    bicubic, fitted = stats.rms_errors(solution)
    loaded.model.fill = fill
    config = {**loaded.config, "fill": {"_target_": FILL_TARGET, "scale": fill.scale, "radius": fill.radius}}
    meta = {**loaded.meta, "fill": {"photos": [p.name for p in paths], "flat_lr_pixels": stats.pixels // 3,
                                    "below": args.below, "rms_bicubic": bicubic, "rms_fitted": fitted}}
    out = save_model(args.out, loaded.model, config, meta, args.format)
    card_if_folder(out, args.format)
    print(f"fitted on {len(paths)} photo(s), {stats.pixels // 3:,} flat LR pixels: RMS error there {bicubic:.5f} "
          f"(bicubic) -> {fitted:.5f} (fitted), on the photos it was fitted on")
    print(f"wrote {out}: {describe(loaded)}, {fill!r}; use it with --skip-flat T --skip-fill linear")
    return 0
