"""pcsr upscale: SR images for an image or a folder, keeping what each image carries (alpha, grey, 16 bits,
ICC profile, EXIF), optionally with a class-map overlay."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from pcsr_lightning.apps.commands.common import (
    DTYPE_NAMES,
    add_dtype_flag,
    add_routing_flags,
    inputs_of,
    is_out_of_memory,
    out_of_memory,
    routing_from,
    warn_slow_dtype,
)
from pcsr_lightning.apps.progress import Progress
from pcsr_lightning.inference.router import heavy_share, skipped_share
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import SRModel, load
from pcsr_lightning.io.files import FileExistsElsewhere, OutputError, check_outputs, output_stems
from pcsr_lightning.io.images import (
    PNG_COMPRESS_LEVEL,
    ImageReadError,
    as_float,
    check_png_level,
    class_overlay,
    non_finite,
    write_png,
)
from pcsr_lightning.io.picture import (
    ALPHA_CHOICES,
    EXTENSIONS,
    FORMATS,
    Picture,
    depth_for,
    format_of,
    holds_alpha,
    kept_in,
    open_picture,
    result_pixels,
    save_picture,
    upscale_alpha,
)
from pcsr_lightning.io.weights import model_reads
from pcsr_lightning.measure.memory import process_peak_mb


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="super-resolve an image or every image of a folder")
    p.add_argument("--ckpt", required=True, help="the model: a .ckpt, a .safetensors, a model folder or a training run")
    p.add_argument("--input", required=True, help="image file or folder")
    p.add_argument("--output", required=True,
                   help="folder for the results, or an image file (x.png, x.jpg, x.webp ...) when --input is one "
                        "image (never an input's own file)")
    p.add_argument("--suffix", default="", help="added to each result's name in the output folder, e.g. _x4 "
                                               "(cat.png -> cat_x4.png; default: none, the input's name)")
    p.add_argument("--ext", choices=EXT_CHOICES, default=None,
                   help="format of the results in the output folder: png (default), jpg, webp, or auto (the "
                        "input's own format); JPEG holds no transparency: an input with alpha is refused")
    p.add_argument("--alpha", choices=ALPHA_CHOICES, default="bicubic",
                   help="how a transparent image's alpha plane is upscaled: bicubic (default), or model (run "
                        "through the network as grey RGB, then its mean; slower)")
    add_routing_flags(p)
    add_dtype_flag(p)
    p.add_argument("--class-map", action="store_true", help="also write <name>_classes.png (PCSR only)")
    keep = p.add_mutually_exclusive_group()
    keep.add_argument("--overwrite", action="store_true", help="replace existing results (refused otherwise)")
    keep.add_argument("--skip-existing", action="store_true",
                      help="keep existing results and upscale only the inputs without one (to continue a stopped run)")
    p.add_argument("--report-memory", action="store_true", help="print the peak memory (RSS on CPU) after each image")
    p.add_argument("--png-level", type=int, default=PNG_COMPRESS_LEVEL, metavar="0-9",
                   help=f"zlib compression of the PNGs: 0 fastest and largest, 9 smallest and slowest, same pixels "
                        f"(default {PNG_COMPRESS_LEVEL})")
    p.set_defaults(run=run)


EXT_CHOICES = ("png", "jpg", "webp", "auto")


def is_file_output(output: Path) -> bool:
    """``--output x.png`` names the result itself (an image extension, and no folder of that name already)."""
    return output.suffix.lower() in EXTENSIONS and not output.is_dir()


def result_extension(path: Path, ext: str | None) -> str:
    """The extension of ``path``'s result in a folder: --ext's, or for ``auto`` the input's own (PNG when
    it is not one this writes)."""
    if ext == "auto":
        return path.suffix.lower() if path.suffix.lower() in EXTENSIONS else ".png"
    return f".{ext or 'png'}"


def plan_outputs(inputs: list[Path], output: Path, class_map: bool, suffix: str = "", ext: str | None = None,
                 single_file: bool = False) -> dict[Path, list[Path]]:
    """Each input's output files: ``<stem><suffix>.<ext>`` in the folder ``output`` (and
    ``<stem><suffix>_classes.png``), unique per input; or ``output`` itself for one input (``single_file``),
    its class map beside it as ``<name>_classes.png``."""
    if single_file:
        return {inputs[0]: [output, *([output.with_name(f"{output.stem}_classes.png")] if class_map else [])]}
    return {path: [output / f"{stem}{suffix}{result_extension(path, ext)}",
                   *([output / f"{stem}{suffix}_classes.png"] if class_map else [])]
            for path, stem in output_stems(inputs).items()}


def check_naming(args: argparse.Namespace, single_file: bool) -> None:
    """--output FILE takes one input and names the result itself: no --suffix or --ext beside it; a suffix
    stays a name's ending (no folder separator)."""
    if not single_file:
        if "/" in args.suffix or "\\" in args.suffix:
            raise ValueError(f"--suffix {args.suffix!r}: a name's ending cannot hold a folder separator")
        return
    if Path(args.input).is_dir():
        raise ValueError(f"--output {args.output} names one image file, but --input {args.input} is a folder; "
                         "give a folder as --output (--suffix and --ext name the results in it)")
    given = [flag for flag, value in (("--suffix", args.suffix), ("--ext", args.ext)) if value]
    if given:
        raise ValueError(f"{' and '.join(given)} name{'' if len(given) > 1 else 's'} the results in an output "
                         f"folder; --output {args.output} names the file itself (its extension gives the format)")
    format_of(args.output)


def check_transparency(plan: dict[Path, list[Path]]) -> None:
    """Before any work: an input with transparency is refused when its result's format cannot hold it."""
    for path, outs in plan.items():
        if 4 in FORMATS[format_of(outs[0])][0]:
            continue
        try:
            transparent = holds_alpha(path)
        except (OSError, ValueError, SyntaxError):
            continue  # an unreadable input is reported when its turn comes
        if transparent:
            raise ValueError(f"{path} has transparency, which {outs[0].suffix} cannot hold; write PNG or WebP "
                             "(--ext png, webp or auto, or such an --output file)")


def check_existing(plan: dict[Path, list[Path]], overwrite: bool, skip_existing: bool) -> None:
    """Results already there are refused unless ``--overwrite`` replaces or ``--skip-existing`` keeps them."""
    existing = [p for outs in plan.values() for p in outs if os.path.lexists(p)]
    if existing and not (overwrite or skip_existing):
        names = ", ".join(str(p) for p in existing[:5]) + (" ..." if len(existing) > 5 else "")
        raise OutputError(f"{len(existing)} output file(s) already exist ({names}); pass --overwrite to replace "
                          "them, or --skip-existing to keep them and upscale only the other inputs")


def run(args: argparse.Namespace) -> int:
    routing = routing_from(args)
    check_png_level(args.png_level)
    out_dir = Path(args.output)
    single_file = is_file_output(out_dir)
    check_naming(args, single_file)
    inputs = inputs_of(Path(args.input), "to upscale")
    plan = plan_outputs(inputs, out_dir, args.class_map, args.suffix, args.ext, single_file)
    # Every refusal (an input overwritten, an existing result, an unwritable folder) before any work.
    check_outputs([p for outs in plan.values() for p in outs], [Path(args.input), *inputs, *model_reads(args.ckpt)])
    check_existing(plan, args.overwrite, args.skip_existing)
    check_transparency(plan)
    model = load(args.ckpt, args.device, dtype=DTYPE_NAMES[args.dtype], memory_format=args.memory_format)
    warn_slow_dtype(args.dtype, model.device)
    scale = model.check_scale(args.scale)
    if model.is_pcsr:  # before any image: a model without the learned gate or the fitted fill asked for
        routing.check_model(model.network, scale)
    tally = Tally(len(plan), out_dir)
    progress = Progress(len(plan), "upscale")
    try:
        for path, outs in plan.items():
            todo = [p for p in outs if not (args.skip_existing and os.path.lexists(p))]
            if not todo:
                tally.kept += 1
            elif upscale_one(args, model, routing, path, outs, todo, progress):
                tally.written += 1
            else:
                tally.failed += 1
            progress.advance()
    except KeyboardInterrupt:
        progress.close()
        instead = " instead of --overwrite" if args.overwrite else ""
        print(f"interrupted: {tally.summary()}; to continue, run the same command with --skip-existing{instead} "
              "(it keeps the finished results and upscales the rest)", file=sys.stderr)
        return 130
    except OutputError as err:
        progress.close()
        hint = ""
        if isinstance(err, FileExistsElsewhere):
            hint = (f". Is another run writing into {out_dir}? (--overwrite replaces such files, --skip-existing "
                    "keeps them)")
        raise OutputError(f"{err}; stopped: {tally.summary()}{hint}") from None
    finally:
        progress.close()  # the bar's line ended before any message below it
    if tally.kept:
        print(f"{tally.kept} image(s) already had their results (kept, --skip-existing)", flush=True)
    if tally.failed:
        print(f"{tally.failed} image(s) could not be processed", file=sys.stderr)
        return 1
    return 0


class Tally:
    """What a folder run has done so far, for the message when it stops early."""

    def __init__(self, total: int, out_dir: Path):
        self.total, self.out_dir = total, out_dir
        self.written = self.kept = self.failed = 0

    def summary(self) -> str:
        text = f"{self.written} of {self.total} image(s) written to {self.out_dir}"
        if self.kept:
            text += f", {self.kept} already there"
        return text + (f", {self.failed} failed" if self.failed else "")


def write_result(pixels, path: Path, picture: Picture, overwrite: bool, compress_level: int) -> Path:
    """The SR image, atomically, with the input's ICC profile and EXIF."""
    return save_picture(pixels, path, picture.icc, picture.exif, overwrite=overwrite, compress_level=compress_level)


def kept_note(picture: Picture, fmt: str, depth: int, alpha: str) -> str:
    """What the result kept beside RGB, for the line per image."""
    icc, exif = kept_in(fmt, picture)
    kept = [name for name, has in ((f"alpha ({alpha})", picture.alpha is not None),
                                   ("grey", picture.grey and fmt != "WEBP"), ("16-bit", depth == 16),
                                   ("ICC profile", bool(icc)), ("EXIF", bool(exif))) if has]
    return f"  kept: {', '.join(kept)}" if kept else ""


def upscale_one(args: argparse.Namespace, model: SRModel, routing: RoutingSpec, path: Path, outs: list[Path],
                todo: list[Path], progress: Progress) -> bool:
    """Upscale one input and write its missing results ``todo``; False (with the error printed, nothing
    written) when the image cannot be read or its result is not finite."""

    def network(x):
        return model.super_resolve(x, args.scale, routing)

    try:
        picture = open_picture(path, args.max_pixels)
        sr, classes = network(as_float(picture.colour)[None])
        alpha = None
        if picture.alpha is not None:
            alpha = upscale_alpha(picture.alpha[None], tuple(sr.shape[-2:]), args.alpha, lambda x: network(x)[0])
    except ImageReadError as err:
        progress.echo(f"error: {err}", sys.stderr)
        return False
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise out_of_memory(err, path.name) from err
    bad = non_finite(sr) + (0 if alpha is None else non_finite(alpha))
    if bad:
        total = sr.numel() + (0 if alpha is None else alpha.numel())
        progress.echo(f"error: {path}: the SR result has {bad:,} non-finite value(s) (NaN or inf) out of {total:,}; "
                      "nothing written for it", sys.stderr)
        return False
    depth = depth_for(format_of(outs[0]), picture.channels, picture.depth)
    if depth < picture.depth:
        progress.echo(f"warning: {path}: {outs[0].suffix} holds 8 bits per channel; the 16-bit result is written "
                      "at 8 (PNG keeps 16)", sys.stderr)
    if outs[0] in todo:
        pixels = result_pixels(picture, sr[0], None if alpha is None else alpha[0], depth)
        write_result(pixels, outs[0], picture, args.overwrite, args.png_level)
    note = ""
    if classes is not None:
        note = f"  heavy share {heavy_share(classes, model.num_classes):.3f}"
        if routing.gate is not None:
            note += f"  skipped share {skipped_share(classes, model.num_classes):.3f}"
        if args.class_map and outs[1] in todo:
            write_png(class_overlay(sr[0], classes[0], model.num_classes), outs[1], overwrite=args.overwrite,
                      compress_level=args.png_level)
    if args.report_memory:
        note += f"  peak memory {process_peak_mb(model.device):,.0f} MiB"
    note += kept_note(picture, format_of(outs[0]), depth, args.alpha)
    progress.echo(f"{path.name} -> {outs[0]} ({sr.shape[-1]}x{sr.shape[-2]}){note}")
    return True
