"""pcsr export: an original network, or PCSR with its routing inside the graph, as ONNX or a torch.export
program (.pt2)."""

from __future__ import annotations

import argparse

from pcsr_lightning.apps.commands.common import K_VALUE, SCALE_VALUE, SKIP_THRESHOLD
from pcsr_lightning.export.exporter import CHECK_SHAPE, DEFAULT_OPSET, FORMATS, ExportSpec, export_model
from pcsr_lightning.export.graph import GRAPHS


def add_parser(sub) -> None:
    p = sub.add_parser("export", help="export a model to ONNX or a torch.export program (PCSR: routing in the graph)")
    p.add_argument("--ckpt", required=True, help="a .ckpt, a .safetensors, a model folder or a training run")
    p.add_argument("--format", choices=FORMATS, required=True,
                   help="onnx (ONNX Runtime and other ONNX runtimes) or exported-program (torch.export, .pt2)")
    p.add_argument("--out", required=True, help="file to write: *.onnx or *.pt2 (exported-program)")
    p.add_argument("--k", type=K_VALUE, default=0.0, help="PCSR: the cost knob, fixed in the graph (default 0)")
    p.add_argument("--scale", type=SCALE_VALUE, default=None,
                   help="integer scale of the graph (default: the original network's own, x4 for PCSR)")
    p.add_argument("--graph", choices=GRAPHS, default="routed",
                   help="PCSR: routed (default; each upsampler on its own pixels, needs NonZero) or dense (every "
                        "upsampler on every pixel, then a select: no data-dependent shapes, the cost of all)")
    p.add_argument("--no-refine", action="store_true", help="PCSR: leave out the pixel-wise refinement")
    p.add_argument("--class-map", action="store_true", help="PCSR: a second output, the class map (N,H,W) int64")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    p.add_argument("--adaptive", action="store_true", help="ADM: not exportable (refused with the reason)")
    p.add_argument("--skip-flat", type=SKIP_THRESHOLD, default=None, metavar="THRESHOLD",
                   help="the flat-tile gate: not exportable (refused with the reason)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output (refused otherwise)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    spec = ExportSpec(scale=args.scale, k=args.k, graph=args.graph, refine=not args.no_refine,
                      class_map=args.class_map, adaptive=args.adaptive, skip_flat=args.skip_flat)
    result = export_model(args.ckpt, args.out, args.format, spec, args.opset, args.overwrite)
    meta = result.metadata
    routing = ""
    if meta["pcsr.kind"] == "pcsr":
        routing = f", {meta['pcsr.graph']} graph at k={float(meta['pcsr.k']):g}, outputs {meta['pcsr.outputs']}"
    if result.check:
        checked = (f"checked against PyTorch on a {'x'.join(map(str, CHECK_SHAPE[2:]))} input: "
                   f"{100 * result.check['within_one_level']:.2f}% of values within one 8-bit level")
    else:
        checked = "not run (onnxruntime is not installed)"
    print(f"wrote {result.path}: {meta['pcsr.kind']} x{meta['pcsr.scale']}{routing}; {checked}")
    return 0
