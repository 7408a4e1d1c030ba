"""pcsr bench: routed PCSR vs its original network (and the reference loop), timed side by side."""

from __future__ import annotations

import argparse
import json

import torch

from pcsr_lightning.apps.commands.common import (
    K_VALUE,
    TILE,
    add_dtype_flag,
    add_memory_format_flag,
    add_skip_flags,
    checked,
    format_table,
    warn_slow_dtype,
)
from pcsr_lightning.apps.progress import Stages
from pcsr_lightning.bench.inputs import parse_size
from pcsr_lightning.bench.run import GUARD_DB, TABLE_HEADER, BenchSettings, Row, ratio_rows, run_bench
from pcsr_lightning.io.files import check_outputs, write_text
from pcsr_lightning.io.weights import model_reads


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time routed PCSR against the original network and the reference path")
    p.add_argument("--pcsr-ckpt", required=True, help="the PCSR model (a .ckpt, a .safetensors or a model folder)")
    p.add_argument("--original-ckpt", required=True,
                   help="the original network PCSR accelerates, timed beside it (same backbone and scale)")
    p.add_argument("--hr-size", required=True, help="HxW of the HR image, e.g. 2160x3840")
    p.add_argument("--scale", type=checked(integer_scale), default=4, help="integer factor >= 2 (the original's)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=[0.0], help="cost knob values for the PCSR fast path")
    add_dtype_flag(p, dest="precision", aliases=("--precision",),
                   help="the dtype both models run in (default fp32; --precision is its older name)")
    add_memory_format_flag(p)
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--routed-threads", type=int, default=None,
                   help="worker threads for the routed part, one intra-op thread each (default: $PCSR_ROUTED_THREADS, "
                        "else one per intra-op thread; 0: each operator over the intra-op threads)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per variant, the median reported (default 3)")
    p.add_argument("--reference-repeats", type=int, default=1, help="the reference loop is slow: fewer repeats")
    p.add_argument("--no-reference", action="store_true", help="skip the reference path")
    p.add_argument("--tile", type=TILE, default=0, help="LR tile size for the PCSR backbone (0 = whole image)")
    add_skip_flags(p, several=True, several_halos=True)
    p.add_argument("--hr-image", help="time on the centre of this photo (at least --hr-size) instead of the mosaic")
    p.add_argument("--no-ends", action="store_true", help="skip the all-heavy / all-light variants")
    p.add_argument("--profile", action="store_true",
                   help="also profile one call of the routed part (first k, features given) per operator")
    p.add_argument("--json", help="write all results here")
    p.set_defaults(run=run)


def integer_scale(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be an integer >= 2, got {text!r}") from None
    if value < 2:
        raise ValueError(f"must be an integer >= 2, got {value}")
    return value


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.routed_threads is not None and args.routed_threads < 0:
        raise ValueError(f"--routed-threads must be >= 0, got {args.routed_threads}")
    settings = BenchSettings(
        args.pcsr_ckpt, args.original_ckpt, parse_size(args.hr_size), args.scale, args.device, args.k, args.precision,
        args.memory_format, args.repeats, args.reference_repeats, not args.no_reference, args.tile, args.profile,
        routed_threads=args.routed_threads, skip_flat=args.skip_flat, skip_tile=args.skip_tile,
        skip_halo=args.skip_halo, skip_gate=args.skip_gate, skip_fill=args.skip_fill,
        skip_budget=args.skip_budget, hr_image=args.hr_image,
        ends=not args.no_ends,
    )
    warn_slow_dtype(args.precision, args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json:
        # before any work
        check_outputs([args.json], [*model_reads(args.pcsr_ckpt), *model_reads(args.original_ckpt),
                                     *([args.hr_image] if args.hr_image else [])])
    stages = Stages()
    try:
        report = run_bench(settings, log=stages.echo, stage=stages)
    finally:
        stages.close()
    rows = [Row(**r) for r in report["rows"]]
    backbone, fast_name = report["ms_backbone"], f"pcsr k={args.k[0]:g}"
    print(format_table(TABLE_HEADER, ratio_rows(rows)))
    if report["machine"].get("glibc_tunables") and report["device"].startswith("cpu"):
        print(f"note: GLIBC_TUNABLES={report['machine']['glibc_tunables']}: where it keeps freed memory in the "
              "process, the peak MiB column counts only memory a call newly took from the OS")
    if "fast_vs_reference" in report:
        check = report["fast_vs_reference"]
        print(f"fast vs reference: {check['speedup']:.2f}x faster end to end, {check['speedup_routed']:.2f}x on the "
              f"routed part alone (everything after the {backbone:.0f} ms backbone: {check['ms_routed_fast']:.1f} vs "
              f"{check['ms_routed_reference']:.1f} ms), class maps identical: "
              f"{check['classes_identical']} ({check['class_map']['differing']} pixels differ, all near-ties: "
              f"{check['class_map']['only_near_ties_differ']}), PSNR difference {check['psnr_diff_db']:.4f} dB")
    if "profile_routed" in report:
        prof = report["profile_routed"]
        workers = report["routed_threads"]
        where = (f"its {workers} workers' blocks run in order on the profiled thread" if workers > 1 else
                 f"{report['machine']['threads']} intra-op threads" if not workers else "1 thread")
        print(f"routed part of {fast_name}, one call, by operator ({prof['clock']} self time, "
              f"{prof['total_ms']:.1f} ms in all; matrix products {100 * prof['matmul_share']:.0f}%; "
              f"CPU capability {report['machine']['cpu_capability']}; {where}):")
        print(format_table(["op", "self ms", "calls", "share"],
                           [[o["op"], f"{o['self_ms']:.1f}", str(o["calls"]), f"{100 * o['share']:.1f}%"]
                            for o in prof["ops"]]))
    if "psnr_guard" in report and not report["psnr_guard"]["ok"]:
        print(f"warning: {args.precision} loses more than {GUARD_DB} dB against fp32: {report['psnr_guard']}")
    if args.json:
        write_text(json.dumps(report, indent=2), args.json)
        print(f"wrote {args.json}")
    return 0
