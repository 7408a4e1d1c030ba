"""The flat-tile gate's threshold chosen on a validation summary: the largest whose mean PSNR at k = 0 stays
within ``--budget`` dB of PCSR's (the plain k = 0 row of the same summary). Prints the threshold alone.
Usage: python experiments/skip_flat_pick.py VAL_SUMMARY.csv [--budget 0.05]
"""

import argparse
import sys

from pcsr_lightning.evaluation.compare import read_summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("summary")
    parser.add_argument("--budget", type=float, default=0.05)
    parser.add_argument("--k", type=float, default=0.0)
    args = parser.parse_args()
    rows = [r for r in read_summary(args.summary) if r["setting"] == "k" and r["k"] == args.k]
    plain = next(r for r in rows if r["skip_flat"] is None)
    ok = []
    for r in sorted((r for r in rows if r["skip_flat"] is not None), key=lambda r: r["skip_flat"]):
        loss = plain["psnr"] - r["psnr"]
        print(f"threshold {r['skip_flat']:g}: {loss:+.4f} dB below PCSR, skipped {r['skipped_share']:.3f}, "
              f"GFLOPs {r['gflops_paper']:.2f} vs {plain['gflops_paper']:.2f}", file=sys.stderr)
        if loss <= args.budget:
            ok.append(r["skip_flat"])
    if not ok:
        raise SystemExit(f"no threshold of {args.summary} stays within {args.budget} dB")
    print(f"{max(ok):g}")


if __name__ == "__main__":
    main()
