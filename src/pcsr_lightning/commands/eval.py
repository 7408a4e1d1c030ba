"""pcsr eval: PSNR (and the heavy share) over a folder of HR images, LR made by MATLAB bicubic."""

from __future__ import annotations

import argparse
import csv
import io
import sys
from pathlib import Path

from pcsr_lightning.checkpoint import load_checkpoint
from pcsr_lightning.commands.common import add_routing_flags, format_table, routing_from
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.io import ImageReadError, list_images, read_image, write_text
from pcsr_lightning.metrics import psnr, shave_for
from pcsr_lightning.predict import check_scale, heavy_share, resolve_device, super_resolve


def make_pair(hr, scale: float):
    """Crop HR so that round(h * s) fits it, then LR = bicubic(HR) at floor(H / s) x floor(W / s)."""
    h, w = int(hr.shape[-2] // scale), int(hr.shape[-1] // scale)
    if h < 1 or w < 1:
        raise ImageReadError(f"image of {tuple(hr.shape[-2:])} is too small for x{scale}")
    hh, ww = round(h * scale), round(w * scale)
    hr = hr[..., :hh, :ww]
    return hr, imresize(hr, (h, w))


def add_parser(sub) -> None:
    p = sub.add_parser("eval", help="PSNR over a folder of HR images (LR by MATLAB-style bicubic)")
    p.add_argument("--ckpt", required=True)
    p.add_argument("--hr-dir", required=True)
    add_routing_flags(p)
    p.add_argument("--out", default=None, help="CSV to write (per image + a final mean row)")
    p.set_defaults(run=run)


def rows_to_csv(header: list[str], rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    loaded = load_checkpoint(args.ckpt, map_location=device)
    check_scale(loaded, args.scale)
    routing = routing_from(args)
    images = list_images(args.hr_dir)
    if not images:
        raise FileNotFoundError(f"no images in {args.hr_dir}")
    rows, failures = [], 0
    for path in images:
        try:
            hr, lr = make_pair(read_image(path).to(device), args.scale)
        except ImageReadError as err:
            print(f"error: {err}", file=sys.stderr)
            failures += 1
            continue
        sr, classes = super_resolve(loaded, lr[None], args.scale, routing)
        share = heavy_share(classes)
        rows.append({
            "image": path.name,
            "psnr": f"{psnr(sr[0], hr, shave_for(args.scale)):.4f}",
            "heavy_share": "" if share is None else f"{share:.4f}",
        })
    header = ["image", "psnr", "heavy_share"]
    if rows:
        shares = [float(r["heavy_share"]) for r in rows if r["heavy_share"]]
        rows.append({
            "image": "mean",
            "psnr": f"{sum(float(r['psnr']) for r in rows) / len(rows):.4f}",
            "heavy_share": f"{sum(shares) / len(shares):.4f}" if shares else "",
        })
    print(format_table(header, [[r[h] for h in header] for r in rows]))
    if args.out:
        write_text(rows_to_csv(header, rows), args.out)
        print(f"wrote {args.out}")
    if failures:
        print(f"{failures} image(s) could not be processed", file=sys.stderr)
        return 1
    return 0
