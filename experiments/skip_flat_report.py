"""Markdown tables from the outputs of ``skip_flat.sh`` and ``skip_flat_4k.sh``: eval summaries (k x
threshold), per-image rows at k = 0, the paired wall-clock ratios of ``pcsr bench`` and, for 4K, each photo
at the threshold the other photos chose. Usage: python experiments/skip_flat_report.py DIR
"""

import csv
import json
import statistics
import sys
from pathlib import Path

from pcsr_lightning.bench.timing import paired_ratio


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


def bench_table(paths: list[Path], prefix: str = "") -> list[str]:
    """One row per bench JSON; the image is the file's stem without ``prefix`` (default: its third field).
    A file whose gated variants differ from the previous file's starts a table of its own."""
    lines: list[str] = []
    header = None
    for path in paths:
        report = json.loads(path.read_text())
        rows = {r["name"]: r for r in report["rows"]}
        base = rows["pcsr k=0"]
        gated = [n for n in rows if " skip=" in n]
        if gated != header:
            header = gated
            lines += ([""] if lines else []) + [
                "| image | HR | original ms | PCSR k=0 ms | PCSR x original |"
                + "".join(f" {n.removeprefix('pcsr k=0 ')}: x PCSR | dB vs PCSR | skipped |" for n in gated),
                "|" + " --- |" * (5 + 3 * len(gated))]
        image = path.stem.removeprefix(prefix) if prefix else path.stem.split("_", 2)[-1]
        cells = [image, "x".join(map(str, report["hr_size"])), f"{rows['original']['ms']:.0f}",
                 f"{base['ms']:.0f}", f"{paired_ratio(base['times_ms'], rows['original']['times_ms']):.3f}"]
        for n in gated:
            r = rows[n]
            cells += [f"{paired_ratio(r['times_ms'], base['times_ms']):.3f}", f"{r['psnr'] - base['psnr']:+.3f}",
                      fmt(r["skipped_share"])]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def bench_medians(paths: list[Path]) -> dict[str, float]:
    """Median over images of each gated variant's paired ratio to PCSR k=0."""
    ratios: dict[str, list[float]] = {}
    for path in paths:
        rows = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
        for n, r in rows.items():
            if " skip=" in n:
                ratios.setdefault(n, []).append(paired_ratio(r["times_ms"], rows["pcsr k=0"]["times_ms"]))
    return {n: statistics.median(v) for n, v in ratios.items()}


def leave_one_out_table(out: Path, family: str) -> list[str]:
    """Each 4K photo at the threshold chosen without it (``loo_<family>.txt``): PSNR and skipped share from
    the per-image eval, wall-clock ratios to PCSR k = 0 from the benches, as glibc comes and memory kept."""
    rows = [r for r in read(out / f"all_{family}_images.csv") if r["image"] != "mean" and r["k"] == 0]
    lines = ["| photo | threshold (chosen on the others) | dB vs PCSR | skipped | x PCSR, halo 8 | x PCSR, exact halo"
             " | memory kept: x PCSR, halo 8 | exact halo | PCSR x original | memory kept: PCSR x original |",
             "|" + " --- |" * 10]
    for line in (out / f"loo_{family}.txt").read_text().split("\n"):
        if not line.strip():
            continue
        name, threshold = line.split()
        mine = [r for r in rows if Path(r["image"]).stem == name]
        plain = next(r for r in mine if r["skip_flat"] is None)
        gated = next(r for r in mine if r["skip_flat"] == float(threshold))
        cells = [name, threshold, f"{gated['psnr'] - plain['psnr']:+.3f}", f"{gated['skipped_share']:.3f}"]
        ratios = {}
        for alloc in ("asis", "kept"):
            path = out / f"bench4k_{alloc}_{family}_{name}.json"
            if path.is_file():
                bench = {r["name"]: r for r in json.loads(path.read_text())["rows"]}
                base = bench["pcsr k=0"]["times_ms"]
                gated = [bench[f"pcsr k=0 skip={float(threshold):g} halo={h}"]["times_ms"] for h in ("8", "rf")]
                ratios[alloc] = [fmt(paired_ratio(t, base)) for t in gated] + \
                    [fmt(paired_ratio(base, bench["original"]["times_ms"]))]
            else:
                ratios[alloc] = ["", "", ""]
        cells += ratios["asis"][:2] + ratios["kept"][:2] + [ratios["asis"][2], ratios["kept"][2]]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/skip_flat")
    for family in ("carn", "fsrcnn"):
        for name in (f"val_{family}.csv", f"test_{family}.csv", f"test_{family}_halo8.csv", f"test4k_{family}.csv",
                     f"textured_{family}.csv", f"skimage_{family}.csv", f"all_{family}.csv"):
            if (out / name).is_file():
                print(f"\n### {name}\n")
                print("\n".join(summary_table(out / name)))
        for name in (f"val_{family}_images.csv", f"test_{family}_images.csv", f"test4k_{family}_images.csv",
                     f"textured_{family}_images.csv", f"skimage_{family}_images.csv", f"all_{family}_images.csv"):
            if (out / name).is_file():
                print(f"\n### {name} (k = 0)\n")
                print("\n".join(per_image_table(out / name)))
        if (out / f"loo_{family}.txt").is_file():
            print(f"\n### {family}: each photo at the threshold the other photos chose (k = 0)\n")
            print("\n".join(leave_one_out_table(out, family)))
        for size in ("2k", "4k", "4k_asis", "4k_kept"):
            paths = sorted(out.glob(f"bench{size}_{family}_*.json"))
            if paths:
                print(f"\n### bench {family} {size} (paired ratios, median over rounds)\n")
                print("\n".join(bench_table(paths, f"bench{size}_{family}_")))
                medians = bench_medians(paths)
                print("\nmedian over images: " + ", ".join(f"{n}: {v:.3f}" for n, v in medians.items()))


if __name__ == "__main__":
    main()
