"""pcsr bench: routed PCSR vs its original network (and the reference loop), timed side by side."""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from pcsr_lightning.measure.bench import TABLE_HEADER, Row, machine_info, op_profile, paired_ratio, parse_size, peak_memory_mb, photo_mosaic, ratio_rows, time_rounds
from pcsr_lightning.io.checkpoint import load_checkpoint
from pcsr_lightning.apps.commands.common import K_VALUE, format_table
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.io.files import check_outputs, write_text
from pcsr_lightning.measure.metrics import psnr, shave_for
from pcsr_lightning.inference.routed import backbone_features, upscale, upscale_forced
from pcsr_lightning.inference.reference import upscale_reference
from pcsr_lightning.inference.predict import resolve_device

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GUARD_DB = 0.05  # low precision may cost at most this much PSNR against fp32
ROUTED_FAST, ROUTED_REFERENCE = "routed part, fast", "routed part, reference"  # timed on given features


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="time routed PCSR against the original network and the reference path")
    p.add_argument("--pcsr-ckpt", required=True)
    p.add_argument("--original-ckpt", required=True)
    p.add_argument("--hr-size", required=True, help="HxW of the HR image, e.g. 2160x3840")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    p.add_argument("--k", type=K_VALUE, nargs="+", default=[0.0], help="cost knob values for the PCSR fast path")
    p.add_argument("--precision", choices=sorted(DTYPES), default="fp32", help="same for both models")
    p.add_argument("--channels-last", action="store_true", help="channels_last memory format (conv speed on GPU)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: leave torch's default)")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--reference-repeats", type=int, default=1, help="the reference loop is slow: fewer repeats")
    p.add_argument("--no-reference", action="store_true", help="skip the reference path")
    p.add_argument("--tile", type=int, default=0, help="LR tile size for the PCSR backbone (0 = whole image)")
    p.add_argument("--profile", action="store_true",
                   help="also profile one call of the routed part (first k, features given) per operator")
    p.add_argument("--json", help="write all results here")
    p.set_defaults(run=run)


def _load(path: str, want_pcsr: bool, device: torch.device, dtype: torch.dtype, channels_last: bool, scale: int):
    loaded = load_checkpoint(path, map_location=device)
    if loaded.is_pcsr != want_pcsr:
        raise ValueError(f"{path} is a {loaded.kind} checkpoint, expected {'pcsr' if want_pcsr else 'original'}")
    model = loaded.model.eval()
    if want_pcsr:
        model.cost_list(scale)  # cached, computed in fp32 before any cast
    elif model.scale != scale:
        raise ValueError(f"the original network upscales x{model.scale}, the benchmark runs x{scale}")
    model = model.to(dtype)
    return model.to(memory_format=torch.channels_last) if channels_last else model


@torch.no_grad()
def first_call(fn, hr: torch.Tensor, scale: int, device) -> tuple[float, object, float, float | None]:
    """The warm-up call: its peak memory, its output, PSNR against the HR and heavy share."""
    out = []
    peak = peak_memory_mb(lambda: out.append(fn()), device)
    result = out[0]
    sr = result if isinstance(result, torch.Tensor) else result.sr
    share = None if isinstance(result, torch.Tensor) else result.heavy_share()
    return peak, result, psnr(sr[0].float().cpu(), hr, shave_for(scale)), share


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0, got {args.threads}")
    if args.repeats < 1 or args.reference_repeats < 1:
        raise ValueError(f"--repeats and --reference-repeats must be >= 1, got {args.repeats}, {args.reference_repeats}")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.json:
        check_outputs([args.json], [args.pcsr_ckpt, args.original_ckpt])  # before any work
    h, w = parse_size(args.hr_size)
    if h % args.scale or w % args.scale:
        raise ValueError(f"--hr-size {h}x{w} must be divisible by --scale {args.scale}")
    dtype = DTYPES[args.precision]
    pcsr = _load(args.pcsr_ckpt, True, device, dtype, args.channels_last, args.scale)
    original = _load(args.original_ckpt, False, device, dtype, args.channels_last, args.scale)
    hr = photo_mosaic((h, w))
    lr = downscale(hr, args.scale).clamp(0, 1)[None].to(device, dtype)
    if args.channels_last:
        lr = lr.contiguous(memory_format=torch.channels_last)
    print(f"bench x{args.scale}: HR {h}x{w}, LR {lr.shape[-2]}x{lr.shape[-1]}, {device}, {args.precision}", flush=True)
    s, tile = args.scale, args.tile
    ref_name = f"reference k={args.k[0]:g}"
    variants = {"original": lambda: original(lr)}
    for k in args.k:
        variants[f"pcsr k={k:g}"] = lambda k=k: upscale(pcsr, lr, s, k=k, tile=tile)
    for name, cls in (("pcsr all-heavy", 0), ("pcsr all-light", pcsr.num_classes - 1)):
        variants[name] = lambda cls=cls: upscale_forced(pcsr, lr, s, cls, tile)
    if not args.no_reference and dtype == torch.float32:
        variants[ref_name] = lambda: upscale_reference(pcsr, lr, s, k=args.k[0])
    fast_name = f"pcsr k={args.k[0]:g}"
    first, outputs = {}, {}
    for name, fn in variants.items():
        peak, result, quality, share = first_call(fn, hr, s, device)
        first[name] = (peak, quality, share)
        if name in (fast_name, ref_name):  # compared below; the other outputs are dropped (memory at 8K)
            outputs[name] = result
        del result
        print(f"  {name}: warm-up done, {quality:.3f} dB", flush=True)
    backbone_name = "pcsr backbone alone"  # shared by the fast and the reference path
    repeats = {name: args.reference_repeats if name == ref_name else args.repeats for name in variants}
    repeats[backbone_name] = args.repeats
    encode = lambda: backbone_features(pcsr, lr, tile)
    feat = encode()
    # The implementations differ only after the backbone: time that part alone, on the same features
    # (end-to-end minus backbone would carry the backbone's run-to-run noise into a small difference).
    fast_routed = lambda: upscale(pcsr, lr, s, k=args.k[0], feat=feat)
    routed = {}
    if ref_name in variants:
        routed = {ROUTED_FAST: fast_routed,
                  ROUTED_REFERENCE: lambda: upscale_reference(pcsr, lr, s, k=args.k[0], feat=feat)}
        repeats.update({ROUTED_FAST: args.repeats, ROUTED_REFERENCE: args.reference_repeats})
    with torch.no_grad():
        times = time_rounds({**variants, backbone_name: encode, **routed}, device, repeats, warmup=0)
    backbone = statistics.median_high(times[backbone_name])
    rows = []
    for name in variants:
        peak, quality, share = first[name]
        rows.append(Row(name, statistics.median_high(times[name]), quality, share, peak, times[name]))
        print(f"  {name}: {rows[-1].ms:.1f} ms", flush=True)
    print(f"  {backbone_name}: {backbone:.1f} ms", flush=True)
    by_name = {r.name: r for r in rows}
    fast_row = by_name[fast_name]
    reference = by_name.get(ref_name)
    report = {"hr_size": [h, w], "scale": s, "device": str(device), "precision": args.precision,
              "channels_last": args.channels_last, "k": args.k, "machine": machine_info(device),
              "timing": "variants interleaved round by round; ratios are medians of same-round ratios"}
    if ref_name in variants:
        fast, ref = outputs[fast_name], outputs[ref_name]
        report["fast_vs_reference"] = {
            "classes_identical": bool(torch.equal(fast.classes, ref.classes)),
            "psnr_diff_db": abs(fast_row.psnr - reference.psnr),
            "speedup": paired_ratio(times[ref_name], times[fast_name]),
            "speedup_routed": paired_ratio(times[ROUTED_REFERENCE], times[ROUTED_FAST]),
            "ms_routed_fast": statistics.median_high(times[ROUTED_FAST]),
            "ms_routed_reference": statistics.median_high(times[ROUTED_REFERENCE]),
        }
    if dtype != torch.float32:
        full = _load(args.pcsr_ckpt, True, device, torch.float32, False, s)
        with torch.no_grad():
            ref_sr = upscale(full, lr.float(), s, k=args.k[0], tile=tile).sr
        fp32_psnr = psnr(ref_sr[0].cpu(), hr, shave_for(s))
        report["psnr_guard"] = {"fp32": fp32_psnr, "low_precision": fast_row.psnr,
                                "ok": fp32_psnr - fast_row.psnr <= GUARD_DB}
    report.update(
        ms_original=by_name["original"].ms,
        ms_backbone=backbone,
        ms_pcsr=fast_row.ms,
        ratio_pcsr=paired_ratio(fast_row.times_ms, by_name["original"].times_ms),
        ms_reference=None if reference is None else reference.ms,
        psnr={r.name: r.psnr for r in rows},
        psnr_original=by_name["original"].psnr,
        psnr_pcsr=fast_row.psnr,
        psnr_reference=None if reference is None else reference.psnr,
        peak_memory_mb={r.name: r.peak_mb for r in rows},
        rows=[r.as_dict() for r in rows],
    )
    if args.profile:
        with torch.no_grad():
            report["profile_routed"] = op_profile(fast_routed, device)
    print(format_table(TABLE_HEADER, ratio_rows(rows)))
    if "fast_vs_reference" in report:
        check = report["fast_vs_reference"]
        print(f"fast vs reference: {check['speedup']:.2f}x faster end to end, {check['speedup_routed']:.2f}x on the "
              f"routed part alone (everything after the {backbone:.0f} ms backbone: {check['ms_routed_fast']:.1f} vs "
              f"{check['ms_routed_reference']:.1f} ms), class maps identical: "
              f"{check['classes_identical']}, PSNR difference {check['psnr_diff_db']:.4f} dB")
    if "profile_routed" in report:
        prof = report["profile_routed"]
        print(f"routed part of {fast_name}, one call, by operator ({prof['clock']} self time, "
              f"{prof['total_ms']:.1f} ms in all; matrix products {100 * prof['matmul_share']:.0f}%):")
        print(format_table(["op", "self ms", "calls", "share"],
                           [[o["op"], f"{o['self_ms']:.1f}", str(o["calls"]), f"{100 * o['share']:.1f}%"]
                            for o in prof["ops"]]))
    if "psnr_guard" in report and not report["psnr_guard"]["ok"]:
        print(f"warning: {args.precision} loses more than {GUARD_DB} dB against fp32: {report['psnr_guard']}")
    if args.json:
        write_text(json.dumps(report, indent=2), args.json)
        print(f"wrote {args.json}")
    return 0
