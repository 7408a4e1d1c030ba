"""Where a two-upsampler PCSR's curve is lost: its upsamplers, its classifier's ranking, or one k's share-out.

For each photo (LR by MATLAB-style bicubic x4) every HR pixel is rendered by U_0 alone and by U_1 alone
(no refinement), and each pixel's squared error against the HR photo is taken on 0-255 levels with the
PSNR border shaved. Sending a share s of the pixels to U_0 then gives the mean squared error
mean(e_1) - (sum of e_1 - e_0 over the pixels sent) / N, for three ways of choosing them:

- the classifier's, each photo alike: the s highest p_0 of each photo (for two upsamplers, argmax
  p / cost^k is a threshold on p_0, so these are the pixels routing sends at some k);
- the oracle's, each photo alike: the s largest e_1 - e_0 of each photo, the best any classifier could
  choose with these upsamplers;
- the classifier's, one threshold: the highest p_0 over all photos' pixels together, s of them in all,
  as one k sends them: each photo gets its own share, and the mean PSNR over photos also depends on how
  the heavy pixels are shared out between photos (a gain counts more in a clean photo than in a busy one).

With the same architecture, equal heavy shares are equal FLOPs, so two models compare at each share. A model
whose classifier rows trail another's while its oracle row does not is short by its classifier (by its
ranking within photos, or, where only the one-threshold row trails, by how it shares heavy pixels out
between photos); one whose oracle row trails too is short by what its upsamplers leave to gain.

    python experiments/routing_oracle.py PHOTOS NAME=A.ckpt NAME=B.ckpt [--shares 0 0.003 ...] [--threads 2]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from pcsr_lightning.evaluation.protocol import load_pair
from pcsr_lightning.inference.session import InferenceSession
from pcsr_lightning.io.checkpoint import load_checkpoint
from pcsr_lightning.io.images import list_images
from pcsr_lightning.measure.metrics import quantize, shave_for

SCALE = 4
SHARES = (0.0, 0.003, 0.008, 0.015, 0.03, 0.06, 0.12)


def pixel_errors(net, hr: torch.Tensor, lr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per shaved HR pixel: p_0, and the squared errors of U_0 and of U_1 alone (mean over RGB, 0-255)."""
    shave = shave_for(SCALE)
    with torch.no_grad():
        session = InferenceSession(net, lr[None], SCALE)
        target = quantize(hr)
        errors = []
        for cls in (0, 1):
            sr = session.forced(cls, refine=False).sr[0]
            errors.append((quantize(sr) - target).pow(2).mean(0)[shave:-shave, shave:-shave].flatten())
    h, w = hr.shape[-2:]
    p0 = session.prepared().probs[0, :, 0].view(h, w)[shave:-shave, shave:-shave].flatten().double()
    return p0, errors[0], errors[1]


def psnr_of(mse: float) -> float:
    return math.inf if mse <= 0 else 10 * math.log10(255.0**2 / mse)


def psnr_at(e1: torch.Tensor, gain_sorted: torch.Tensor, share: float) -> float:
    """PSNR with the first round(share * N) pixels of ``gain_sorted`` (their e_1 - e_0) sent to U_0."""
    n = round(share * e1.numel())
    return psnr_of((float(e1.sum()) - float(gain_sorted[:n].sum())) / e1.numel())


def global_shares(ranked: list[tuple[torch.Tensor, torch.Tensor, float]], shares) -> list[float]:
    """Mean PSNR at each share when one threshold on p_0 over every photo's pixels sends that share of them
    all to U_0, as routing at one k does: each photo then gets its own share. ``ranked``: per photo, p_0
    sorted descending, the cumulative e_1 - e_0 in that order, and e_1's sum."""
    everything = torch.cat([p for p, _, _ in ranked]).sort(descending=True).values  # once for every share
    means = []
    for share in shares:
        n = round(share * everything.numel())
        threshold = everything[n - 1] if n else math.inf
        total = 0.0
        for p, cum_gain, e1_sum in ranked:
            sent = int((p >= threshold).sum())
            total += psnr_of((e1_sum - (float(cum_gain[sent - 1]) if sent else 0.0)) / p.numel())
        means.append(total / len(ranked))
    return means


def curves(net, pairs, shares) -> tuple[list[float], list[float], list[float]]:
    """Mean PSNR over photos at each share: the classifier's choice with the same share in every photo,
    the oracle's, and the classifier's with one threshold over all photos."""
    by_classifier, by_oracle = [0.0] * len(shares), [0.0] * len(shares)
    ranked = []
    for hr, lr in pairs:
        p0, e0, e1 = pixel_errors(net, hr, lr)
        gain = e1 - e0
        order = torch.argsort(p0, descending=True)
        chosen = gain[order]
        best = torch.sort(gain, descending=True).values
        ranked.append((p0[order].float(), chosen.cumsum(0), float(e1.sum())))
        for i, share in enumerate(shares):
            by_classifier[i] += psnr_at(e1, chosen, share) / len(pairs)
            by_oracle[i] += psnr_at(e1, best, share) / len(pairs)
    return by_classifier, by_oracle, global_shares(ranked, shares)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", type=Path)
    parser.add_argument("models", nargs="+", help="NAME=CHECKPOINT of a two-upsampler PCSR model")
    parser.add_argument("--shares", type=float, nargs="+", default=list(SHARES))
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    models = [spec.split("=", 1) for spec in args.models]
    if any(len(m) != 2 for m in models):
        parser.error("each model is NAME=CHECKPOINT")
    pairs = [load_pair(path, SCALE, None, "paper") for path in list_images(args.photos)]
    print(f"{len(pairs)} photos in {args.photos}, x{SCALE}, no refinement; mean PSNR (dB) with a share of "
          "the pixels sent to U_0\n")
    print("| model | " + " | ".join(f"{s:.1%}" for s in args.shares) + " |")
    print("| --- |" + " --- |" * len(args.shares))
    for name, ckpt in models:
        net = load_checkpoint(ckpt).model.eval()
        if getattr(net, "num_classes", 1) != 2:
            raise SystemExit(f"{ckpt}: routing_oracle compares two-upsampler PCSR models")
        rows = zip(("classifier, each photo alike", "oracle, each photo alike", "classifier, one threshold"),
                   curves(net, pairs, args.shares))
        for how, values in rows:
            print(f"| {name}: {how} | " + " | ".join(f"{v:.3f}" for v in values) + " |", flush=True)


if __name__ == "__main__":
    main()
