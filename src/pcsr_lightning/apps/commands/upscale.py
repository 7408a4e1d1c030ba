"""pcsr upscale: SR PNGs for an image or a folder, optionally with a class-map overlay."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pcsr_lightning.apps.commands.common import add_routing_flags, is_out_of_memory, out_of_memory, routing_from
from pcsr_lightning.inference.layout import as_input, choose_memory_format
from pcsr_lightning.inference.predict import check_scale, load_for_inference, resolve_device, super_resolve
from pcsr_lightning.inference.router import heavy_share, skipped_share
from pcsr_lightning.io.files import check_outputs, output_stems
from pcsr_lightning.io.images import ImageReadError, class_overlay, list_images, read_image, write_png
from pcsr_lightning.measure.memory import process_peak_mb


def inputs_of(path: Path) -> list[Path]:
    if path.is_dir():
        return list_images(path)
    if path.is_file():
        return [path]
    raise FileNotFoundError(f"input not found: {path}")


def add_parser(sub) -> None:
    p = sub.add_parser("upscale", help="super-resolve an image or every image of a folder")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--input", required=True, help="image file or folder")
    p.add_argument("--output", required=True, help="folder for the SR PNGs (never an input's own file)")
    add_routing_flags(p)
    p.add_argument("--class-map", action="store_true", help="also write <name>_classes.png (PCSR only)")
    p.add_argument("--overwrite", action="store_true", help="replace existing results (refused otherwise)")
    p.add_argument("--report-memory", action="store_true", help="print the peak memory (RSS on CPU) after each image")
    p.set_defaults(run=run)


def plan_outputs(inputs: list[Path], out_dir: Path, class_map: bool) -> dict[Path, list[Path]]:
    """Each input's output files: ``<stem>.png`` (and ``<stem>_classes.png``), unique per input."""
    return {path: [out_dir / f"{stem}.png", *([out_dir / f"{stem}_classes.png"] if class_map else [])]
            for path, stem in output_stems(inputs).items()}


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    routing = routing_from(args)
    out_dir = Path(args.output)
    inputs = inputs_of(Path(args.input))
    plan = plan_outputs(inputs, out_dir, args.class_map)
    # Every refusal (an input overwritten, an existing result, an unwritable folder) before any work.
    check_outputs([p for outs in plan.values() for p in outs], inputs, overwrite=args.overwrite)
    memory_format = choose_memory_format(device, args.memory_format)
    loaded = load_for_inference(args.ckpt, device, memory_format)
    check_scale(loaded, args.scale)
    failures = 0
    for path, outs in plan.items():
        try:
            lr = as_input(read_image(path, args.max_pixels)[None].to(device), memory_format)
            sr, classes = super_resolve(loaded, lr, args.scale, routing)
        except ImageReadError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        except (MemoryError, RuntimeError) as err:
            if not is_out_of_memory(err):
                raise
            raise out_of_memory(err, path.name) from err
        target = write_png(sr[0], outs[0])
        note = ""
        if classes is not None:
            note = f"  heavy share {heavy_share(classes):.3f}"
            if routing.skip_flat is not None:
                note += f"  skipped share {skipped_share(classes, loaded.model.num_classes):.3f}"
            if args.class_map:
                write_png(class_overlay(sr[0], classes[0], loaded.model.num_classes), outs[1])
        if args.report_memory:
            note += f"  peak memory {process_peak_mb(device):,.0f} MiB"
        print(f"{path.name} -> {target} ({sr.shape[-1]}x{sr.shape[-2]}){note}")
    if failures:
        print(f"{failures} image(s) could not be processed", file=sys.stderr)
        return 1
    return 0
