"""pcsr compare: two or more `pcsr eval --summary` CSVs as one table and one plot, with the PSNR gap to
the first at equal GFLOPs."""

from __future__ import annotations

import argparse

from pcsr_lightning.apps.commands.common import format_table
from pcsr_lightning.evaluation.compare import (
    curve_points,
    gaps_at_equal_gflops,
    read_summary,
    split_by_threshold,
    worst_gaps_both_ways,
)
from pcsr_lightning.evaluation.evaluate import curve_series
from pcsr_lightning.evaluation.plot import save_plot
from pcsr_lightning.io.files import check_outputs, write_text


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="PSNR/GFLOPs curves of several eval summaries, gap to the first at equal GFLOPs")
    p.add_argument("summaries", nargs="+", metavar="LABEL=SUMMARY_CSV",
                   help="the first is the reference; a summary with --skip-flat rows gives a curve per threshold")
    p.add_argument("--table", help="Markdown table to write")
    p.add_argument("--plot", help="PNG with every curve")
    p.add_argument("--title", default="PSNR vs GFLOPs", help="the plot's title (default: PSNR vs GFLOPs)")
    p.add_argument("--log-x", action="store_true", help="GFLOPs on a log scale (spreads the light end)")
    p.set_defaults(run=run)


def parse(items: list[str]) -> dict[str, list[dict]]:
    out = {}
    for item in items:
        label, sep, path = item.partition("=")
        if not sep or not label or not path:
            raise ValueError(f"expected LABEL=SUMMARY_CSV, got {item!r}")
        if label in out:
            raise ValueError(f"label {label!r} is given twice: each summary needs its own label")
        curves = split_by_threshold(label, read_summary(path))
        clash = [name for name in curves if name in out]
        if clash:
            raise ValueError(f"curve {clash[0]!r} is given twice: each summary needs its own label")
        out.update(curves)
    if len(out) < 2:
        raise ValueError("compare needs at least two curves: two summaries, or one with --skip-flat rows")
    return out


def run(args: argparse.Namespace) -> int:
    sources = [item.partition("=")[2] for item in args.summaries]
    check_outputs([p for p in (args.table, args.plot) if p], [p for p in sources if p])  # before any work
    summaries = parse(args.summaries)
    (ref_label, ref), *others = summaries.items()
    reference = curve_points(ref)
    header = ["model", "setting", "k", "heavy_share", "skipped_share", "gflops_paper", "psnr",
              f"{ref_label} psnr at equal GFLOPs", "gap dB"]
    rows, verdicts = [], []
    for label, summary in summaries.items():
        curve = sorted((r for r in summary if r["setting"] in ("k", "all-light", "all-heavy")),
                       key=lambda r: (r["gflops_paper"], r["psnr"]))
        gaps = gaps_at_equal_gflops(reference, [(r["gflops_paper"], r["psnr"]) for r in curve])
        for r, g in zip(curve, gaps):  # both sorted by (GFLOPs, PSNR)
            rows.append([label, r["setting"], "" if r["k"] is None else f"{r['k']:g}",
                         "" if r["heavy_share"] is None else f"{r['heavy_share']:.3f}",
                         "" if r.get("skipped_share") is None else f"{r['skipped_share']:.3f}",
                         f"{r['gflops_paper']:.3f}",
                         f"{r['psnr']:.3f}", "" if g["reference_psnr"] is None else f"{g['reference_psnr']:.3f}",
                         "" if g["gap_db"] is None or label == ref_label else f"{g['gap_db']:+.3f}"])
        if label != ref_label:
            worst = worst_gaps_both_ways(reference, [(r["gflops_paper"], r["psnr"]) for r in curve])
            shown = {k: "n/a" if v is None else f"{v:+.3f} dB" for k, v in worst.items()}
            verdicts.append(f"{label} vs {ref_label}: worst gap at equal GFLOPs "
                            + ("n/a (no overlap)" if worst["either"] is None else
                               f"{shown['either']} ({shown['at_other']} at {label}'s points, "
                               f"{shown['at_reference']} at {ref_label}'s)"))
    print(format_table(header, rows))
    for line in verdicts:
        print(line)
    if args.table:
        lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        write_text("\n".join(lines + [""] + [f"{v}  " for v in verdicts]) + "\n", args.table)
    if args.plot:
        series = [s for label, summary in summaries.items() for s in curve_series(summary, label)]
        save_plot(series, args.plot, args.title, log_x=args.log_x)
    return 0
