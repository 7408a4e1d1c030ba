"""Markdown tables from the outputs of ``skip_flat.sh``: eval summaries (k x threshold), per-image rows at
k = 0 and the paired wall-clock ratios of ``pcsr bench``. Usage: python experiments/skip_flat_report.py DIR
"""

import csv
import json
import statistics
import sys
from pathlib import Path

from pcsr_lightning.evaluation.bench import paired_ratio


def number(text):
    return None if text in ("", None) else float(text)


def read(path):
    with open(path, newline="") as f:
        return [{k: (v if k in ("image", "model", "setting") else number(v)) for k, v in r.items()}
                for r in csv.DictReader(f)]


def fmt(value, spec=".3f"):
    return "" if value is None else format(value, spec)


def summary_table(path: Path) -> list[str]:
    rows = [r for r in read(path) if r["model"] == "pcsr" and r["setting"] == "k"]
    plain = {r["k"]: r for r in rows if r["skip_flat"] is None}
    lines = ["| k | threshold | PSNR dB | vs PCSR dB | GFLOPs (paper) | vs PCSR | heavy share | skipped share |",
             "|" + " --- |" * 8]
    for r in sorted(rows, key=lambda r: (r["k"], -1 if r["skip_flat"] is None else r["skip_flat"])):
        ref = plain[r["k"]]
        lines.append(f"| {r['k']:g} | {'-' if r['skip_flat'] is None else format(r['skip_flat'], 'g')} | "
                     f"{r['psnr']:.3f} | {r['psnr'] - ref['psnr']:+.3f} | {r['gflops_paper']:.1f} | "
                     f"{r['gflops_paper'] / ref['gflops_paper']:.3f} | {fmt(r['heavy_share'])} | "
                     f"{fmt(r['skipped_share'])} |")
    original = [r for r in read(path) if r["setting"] == "original"]
    if original:
        lines.append(f"\noriginal network: {original[0]['psnr']:.3f} dB, {original[0]['gflops_paper']:.1f} GFLOPs")
    return lines


def per_image_table(path: Path, k: float = 0.0) -> list[str]:
    rows = [r for r in read(path) if r["image"] != "mean" and r["model"] == "pcsr" and r["k"] == k]
    images = sorted({r["image"] for r in rows})
    thresholds = sorted({r["skip_flat"] for r in rows if r["skip_flat"] not in (None, 0.0)})
    head = "| image | PCSR dB | PCSR GFLOPs |" + "".join(f" T={t:g}: dB vs PCSR | GFLOPs ratio | skipped |"
                                                      for t in thresholds)
    lines = [head, "|" + " --- |" * (3 + 3 * len(thresholds))]
    for image in images:
        plain = next(r for r in rows if r["image"] == image and r["skip_flat"] is None)
        cells = [image, f"{plain['psnr']:.3f}", f"{plain['gflops_paper']:.1f}"]
        for t in thresholds:
            r = next(r for r in rows if r["image"] == image and r["skip_flat"] == t)
            cells += [f"{r['psnr'] - plain['psnr']:+.3f}", f"{r['gflops_paper'] / plain['gflops_paper']:.3f}",
                      f"{r['skipped_share']:.3f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def bench_table(paths: list[Path]) -> list[str]:
    lines = None
    for path in paths:
        report = json.loads(path.read_text())
        rows = {r["name"]: r for r in report["rows"]}
        base = rows["pcsr k=0"]
        gated = [n for n in rows if " skip=" in n]
        if lines is None:
            lines = ["| image | HR | original ms | PCSR k=0 ms | PCSR x original |"
                     + "".join(f" {n.removeprefix('pcsr k=0 ')}: x PCSR | dB vs PCSR | skipped |" for n in gated),
                     "|" + " --- |" * (5 + 3 * len(gated))]
        cells = [path.stem.split("_", 2)[-1], "x".join(map(str, report["hr_size"])), f"{rows['original']['ms']:.0f}",
                 f"{base['ms']:.0f}", f"{paired_ratio(base['times_ms'], rows['original']['times_ms']):.3f}"]
        for n in gated:
            r = rows[n]
            cells += [f"{paired_ratio(r['times_ms'], base['times_ms']):.3f}", f"{r['psnr'] - base['psnr']:+.3f}",
                      fmt(r["skipped_share"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines or []


def bench_medians(paths: list[Path]) -> dict[str, float]:
    """Median over images of each gated variant's paired ratio to PCSR k=0."""
    ratios: dict[str, list[float]] = {}
    for path in paths:
        rows = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
        for n, r in rows.items():
            if " skip=" in n:
                ratios.setdefault(n, []).append(paired_ratio(r["times_ms"], rows["pcsr k=0"]["times_ms"]))
    return {n: statistics.median(v) for n, v in ratios.items()}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/skip_flat")
    for family in ("carn", "fsrcnn"):
        for name in (f"val_{family}.csv", f"test_{family}.csv", f"test_{family}_halo8.csv", f"test4k_{family}.csv",
                     f"textured_{family}.csv", f"skimage_{family}.csv"):
            if (out / name).is_file():
                print(f"\n### {name}\n")
                print("\n".join(summary_table(out / name)))
        for name in (f"val_{family}_images.csv", f"test_{family}_images.csv", f"test4k_{family}_images.csv",
                     f"textured_{family}_images.csv", f"skimage_{family}_images.csv"):
            if (out / name).is_file():
                print(f"\n### {name} (k = 0)\n")
                print("\n".join(per_image_table(out / name)))
        for size in ("2k", "4k"):
            paths = sorted(out.glob(f"bench{size}_{family}_*.json"))
            if paths:
                print(f"\n### bench {family} {size} (paired ratios, median over rounds)\n")
                print("\n".join(bench_table(paths)))
                medians = bench_medians(paths)
                print("\nmedian over images: " + ", ".join(f"{n}: {v:.3f}" for n, v in medians.items()))


if __name__ == "__main__":
    main()
