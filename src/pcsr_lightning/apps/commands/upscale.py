"""pcsr upscale: SR PNGs for an image or a folder, optionally with a class-map overlay."""

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
from pcsr_lightning.inference.gate import check_gate
from pcsr_lightning.inference.router import heavy_share, skipped_share
from pcsr_lightning.inference.srmodel import RoutingOptions, SRModel, load
from pcsr_lightning.io.files import FileExistsElsewhere, OutputError, check_outputs, output_stems
from pcsr_lightning.io.images import (
    PNG_COMPRESS_LEVEL,
    ImageReadError,
    check_png_level,
    class_overlay,
    non_finite,
    read_image,
    write_png,
)
from pcsr_lightning.measure.memory import process_peak_mb


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="super-resolve an image or every image of a folder")
    p.add_argument("--ckpt", required=True, help="the model: a .ckpt, a .safetensors, a model folder or a training run")
    p.add_argument("--input", required=True, help="image file or folder")
    p.add_argument("--output", required=True, help="folder for the SR PNGs (never an input's own file)")
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


def plan_outputs(inputs: list[Path], out_dir: Path, class_map: bool) -> dict[Path, list[Path]]:
    """Each input's output files: ``<stem>.png`` (and ``<stem>_classes.png``), unique per input."""
    return {path: [out_dir / f"{stem}.png", *([out_dir / f"{stem}_classes.png"] if class_map else [])]
            for path, stem in output_stems(inputs).items()}


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
    inputs = inputs_of(Path(args.input), "to upscale")
    plan = plan_outputs(inputs, out_dir, args.class_map)
    # Every refusal (an input overwritten, an existing result, an unwritable folder) before any work.
    check_outputs([p for outs in plan.values() for p in outs], inputs)
    check_existing(plan, args.overwrite, args.skip_existing)
    model = load(args.ckpt, args.device, dtype=DTYPE_NAMES[args.dtype], memory_format=args.memory_format)
    warn_slow_dtype(args.dtype, model.device)
    scale = model.check_scale(args.scale)
    if model.is_pcsr:  # before any image: a model without the learned gate or the fitted fill asked for
        check_gate(routing.skip_gate, routing.skip_fill, model.network, scale)
    progress = Progress(len(plan), out_dir)
    try:
        for path, outs in plan.items():
            todo = [p for p in outs if not (args.skip_existing and os.path.lexists(p))]
            if not todo:
                progress.kept += 1
                continue
            if upscale_one(args, model, routing, path, outs, todo):
                progress.written += 1
            else:
                progress.failed += 1
    except KeyboardInterrupt:
        instead = " instead of --overwrite" if args.overwrite else ""
        print(f"interrupted: {progress.summary()}; to continue, run the same command with --skip-existing{instead} "
              "(it keeps the finished results and upscales the rest)", file=sys.stderr)
        return 130
    except OutputError as err:
        hint = ""
        if isinstance(err, FileExistsElsewhere):
            hint = (f". Is another run writing into {out_dir}? (--overwrite replaces such files, --skip-existing "
                    "keeps them)")
        raise OutputError(f"{err}; stopped: {progress.summary()}{hint}") from None
    if progress.kept:
        print(f"{progress.kept} image(s) already had their results (kept, --skip-existing)")
    if progress.failed:
        print(f"{progress.failed} image(s) could not be processed", file=sys.stderr)
        return 1
    return 0


class Progress:
    """What a folder run has done so far, for the message when it stops early."""

    def __init__(self, total: int, out_dir: Path):
        self.total, self.out_dir = total, out_dir
        self.written = self.kept = self.failed = 0

    def summary(self) -> str:
        text = f"{self.written} of {self.total} image(s) written to {self.out_dir}"
        if self.kept:
            text += f", {self.kept} already there"
        return text + (f", {self.failed} failed" if self.failed else "")


def upscale_one(args: argparse.Namespace, model: SRModel, routing: RoutingOptions, path: Path, outs: list[Path],
                todo: list[Path]) -> bool:
    """Upscale one input and write its missing results ``todo``; False (with the error printed, nothing
    written) when the image cannot be read or its result is not finite."""
    try:
        sr, classes = model.super_resolve(read_image(path, args.max_pixels)[None], args.scale, routing)
    except ImageReadError as err:
        print(f"error: {err}", file=sys.stderr)
        return False
    except (MemoryError, RuntimeError) as err:
        if not is_out_of_memory(err):
            raise
        raise out_of_memory(err, path.name) from err
    bad = non_finite(sr)
    if bad:
        print(f"error: {path}: the SR result has {bad:,} non-finite value(s) (NaN or inf) out of {sr.numel():,}; "
              "nothing written for it", file=sys.stderr)
        return False
    if outs[0] in todo:
        write_png(sr[0], outs[0], overwrite=args.overwrite, compress_level=args.png_level)
    note = ""
    if classes is not None:
        note = f"  heavy share {heavy_share(classes, model.num_classes):.3f}"
        if routing.skip_flat is not None:
            note += f"  skipped share {skipped_share(classes, model.num_classes):.3f}"
        if args.class_map and outs[1] in todo:
            write_png(class_overlay(sr[0], classes[0], model.num_classes), outs[1], overwrite=args.overwrite,
                      compress_level=args.png_level)
    if args.report_memory:
        note += f"  peak memory {process_peak_mb(model.device):,.0f} MiB"
    print(f"{path.name} -> {outs[0]} ({sr.shape[-1]}x{sr.shape[-2]}){note}")
    return True
