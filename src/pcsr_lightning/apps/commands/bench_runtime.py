"""pcsr bench-runtime: an exported model in ONNX Runtime beside the PyTorch path, PCSR and its original
network, in paired rounds."""

from __future__ import annotations

import argparse
import json

from pcsr_lightning.apps.commands.common import K_VALUE, POSITIVE_INT, format_table
from pcsr_lightning.bench.inputs import parse_size
from pcsr_lightning.bench.runtime import RuntimeBenchSettings, bench_runtimes
from pcsr_lightning.export.graph import GRAPHS
from pcsr_lightning.io.files import check_outputs, write_text
from pcsr_lightning.io.weights import model_reads


def add_parser(sub) -> None:
    p = sub.add_parser("bench-runtime", help="time the ONNX export in ONNX Runtime beside the PyTorch path")
    p.add_argument("--runtime", choices=["onnxruntime"], default="onnxruntime", help="the runtime timed")
    p.add_argument("--pcsr-ckpt", required=True, help="the PCSR model (a .ckpt, a .safetensors or a model folder)")
    p.add_argument("--original-ckpt", required=True,
                   help="the original network PCSR accelerates, timed beside it (same backbone and scale)")
    p.add_argument("--hr-image", required=True, help="a photo; its centre crop of --hr-size is the HR image")
    p.add_argument("--hr-size", required=True, help="HxW of the HR image, e.g. 1080x1920")
    p.add_argument("--scale", type=POSITIVE_INT, default=4, help="the integer factor of both models (default 4)")
    p.add_argument("--k", type=K_VALUE, default=0.0, help="PCSR's cost knob, in both paths")
    p.add_argument("--graph", choices=GRAPHS, default="routed", help="which PCSR graph to export")
    p.add_argument("--rounds", type=POSITIVE_INT, default=5,
                   help="timed rounds, each running every variant once (after one warm-up call each)")
    p.add_argument("--threads", type=POSITIVE_INT, default=2, help="intra-op threads of both runtimes")
    p.add_argument("--profile", action="store_true", help="also profile one ONNX Runtime run per operator type")
    p.add_argument("--json", help="write the report here")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    settings = RuntimeBenchSettings(args.pcsr_ckpt, args.original_ckpt, args.hr_image, parse_size(args.hr_size),
                                    args.scale, args.k, args.rounds, args.threads, args.graph, args.profile)
    if args.json:
        check_outputs([args.json], [*model_reads(args.pcsr_ckpt), *model_reads(args.original_ckpt), args.hr_image])
    report = bench_runtimes(settings, log=lambda line: print(line, flush=True))
    rows = []
    for m in report["models"]:
        rows.append([m["name"], f"{m['ms']['pytorch']:.0f}", f"{m['ms']['onnxruntime']:.0f}", f"{m['ratio']:.2f}x",
                     f"{100 * m['agreement']['within_one_level']:.3f}%", str(m["agreement"]["max_levels"]),
                     "-" if m["heavy_share"] is None else f"{m['heavy_share']:.3f}"])
    print(format_table(["model", "pytorch ms", "onnxruntime ms", "ort/pytorch (paired median)",
                        "within 1 level", "max levels", "heavy share"], rows))
    ratios = report["pcsr_vs_original"]
    print(f"pcsr / original (paired median): pytorch {ratios['pytorch']:.2f}x, "
          f"onnxruntime {ratios['onnxruntime']:.2f}x")
    for m in report["models"]:
        fused = {op: n for op, n in m["optimized_ops"].items() if op not in m["ops"]}
        gone = {op: n for op, n in m["ops"].items() if op not in m["optimized_ops"]}
        print(f"{m['name']}: {sum(m['ops'].values())} nodes exported, {sum(m['optimized_ops'].values())} after "
              f"ONNX Runtime's optimisations; new: {fused or 'none'}; gone: {gone or 'none'}")
        if m["profile"]:
            prof = m["profile"]
            print(f"{m['name']} in ONNX Runtime, one run by operator ({prof['total_ms']:.0f} ms of kernel time in a "
                  f"{prof['run_ms']:.0f} ms run):")
            print(format_table(["op", "ms", "share"], [[o["op"], f"{o['ms']:.1f}", f"{100 * o['share']:.1f}%"]
                                                         for o in prof["ops"]]))
    load = report["machine"]
    print(f"load average before/after: {load['load_average_before']} / {load.get('load_average')}")
    if args.json:
        write_text(json.dumps(report, indent=2), args.json)
        print(f"wrote {args.json}")
    return 0
