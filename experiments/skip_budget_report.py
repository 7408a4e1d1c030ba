"""The gate_budget study's headline: per backbone and photo set, the share of photos over the budget beside
the wall clock, then every photo's row.

Reads the finished jobs of ``pcsr-study study=gate_budget`` (their ``result.json``): the eval steps give each
photo's PSNR against PCSR without the gate, its skipped share and GFLOPs; the bench steps its times (the
median of the timed rounds; ratios of medians) against PCSR and the original network, on the 4K mosaics.

    python experiments/skip_budget_report.py outputs/studies/gate_budget [--budget 0.05]
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

SETS = {"eval_report": "report photos", "eval_val": "val photos", "eval_samples": "scikit-image",
        "eval_4k_report": "4K mosaics (report)", "eval_4k_val": "4K mosaics (val)"}
BENCHES = {"eval_4k_report": "bench_4k_report", "eval_4k_val": "bench_4k_val"}


def results(study: Path, step: str) -> dict[str, list[dict]]:
    """family -> the rows of the step's job of that family."""
    out = {}
    for path in sorted((study / step).glob("*/result.json")):
        job = json.loads(path.read_text())
        out[job["point"].get("family", path.parent.name)] = job["rows"]
    return out


def stem(name: str) -> str:
    return Path(name).stem


def bench_times(rows: list[dict]) -> dict[str, dict]:
    """image stem -> {gate x PCSR, gate x original, PCSR x original} from a bench step's rows."""
    out: dict[str, dict] = {}
    for r in rows:
        if "budget=" in str(r.get("variant")):
            out.setdefault(stem(r["image"]), {}).update(gate_pcsr=r["vs_pcsr"], gate_original=r["vs_original"],
                                                        gate_ms=r["ms"])
        elif r.get("variant") == "summary":
            out.setdefault(stem(r["image"]), {}).update(pcsr_original=r["ratio_pcsr"], pcsr_ms=r["ms_pcsr"])
    return out


def fmt(value, spec: str) -> str:
    return "" if value is None else format(value, spec)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", type=Path)
    ap.add_argument("--budget", type=float, default=0.05)
    args = ap.parse_args(argv)
    headline, per_photo = [], []
    for step, label in SETS.items():
        evals = results(args.study, step)
        benches = results(args.study, BENCHES[step]) if step in BENCHES else {}
        for family, rows in evals.items():
            gated = [r for r in rows if r.get("vs_pcsr_db") is not None and r["image"] != "mean"]
            if not gated:
                continue
            times = bench_times(benches.get(family, []))
            losses = [-r["vs_pcsr_db"] for r in gated]
            over = sum(loss > args.budget for loss in losses)
            timed = [times[stem(r["image"])] for r in gated if "gate_pcsr" in times.get(stem(r["image"]), {})]
            ratios, vs_original = [t["gate_pcsr"] for t in timed], [t["gate_original"] for t in timed]
            headline.append(f"| {family} | {label} | {len(gated)} | **{over} of {len(gated)}** | {max(losses):.3f} | "
                            f"{statistics.mean(r['skipped_share'] for r in gated):.1%} | "
                            f"{statistics.median(r['gflops_vs_pcsr'] for r in gated):.3f} | "
                            f"{fmt(statistics.median(ratios) if ratios else None, '.3f')} | "
                            f"{fmt(statistics.median(vs_original) if vs_original else None, '.3f')} |")
            for r in gated:
                t = times.get(stem(r["image"]), {})
                per_photo.append(f"| {family} | {label} | {stem(r['image'])} | {r['vs_pcsr_db']:+.4f} | "
                                 f"{r['skipped_share']:.1%} | {r['gflops_paper']:.1f} | {r['gflops_vs_pcsr']:.3f} | "
                                 f"{fmt(t.get('gate_pcsr'), '.3f')} | {fmt(t.get('gate_original'), '.3f')} | "
                                 f"{fmt(t.get('pcsr_original'), '.3f')} |")
    print(f"| model | photos | n | over {args.budget:g} dB | worst dB lost | mean skipped | median GFLOPs x PCSR | "
          "median time x PCSR | median time x original |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(headline))
    print("\n| model | photos | photo | dB vs PCSR | skipped | GFLOPs | x PCSR | time x PCSR | time x original | "
          "PCSR x original |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    print("\n".join(per_photo))


if __name__ == "__main__":
    main()
