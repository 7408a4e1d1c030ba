"""Training photos for the learned gate, checked disjoint from the evaluation photos.

Usage: python experiments/learned_gate_photos.py POOL EVAL_DIR [EVAL_DIR ...] --out OUT

POOL is a photo pool from ``photo_pool.py`` (its train/ and report/ folders). Every pool photo is compared
with every evaluation photo, by file stem and by content: the same decoded pixels (content hash), or a
difference hash of the whole frame or of its centre square within ``--near-bits`` bits (photo_pool.py's
rule for the same picture at another size or crop; the hash is of a 17x16 average, so sizes need not
match). A photo that matches is left out and named. OUT/train gets the pool's train/ photos, OUT/val its
report/ photos (the gate's validation images), as copies; OUT/check.csv lists every comparison's closest
match. Exit status 2 when a split would be empty.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from photo_pool import NEAR_BITS, content_hash, difference_hash, hamming, to_rgb  # noqa: E402

SUFFIXES = {".png", ".jpg", ".jpeg", ".webp"}


def images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)


def signature(path: Path) -> tuple[str, int, int]:
    with Image.open(path) as img:
        arr, _ = to_rgb(img)
    return content_hash(arr), difference_hash(arr), difference_hash(arr, centre=True)


def stem(path: Path) -> str:
    name = path.stem.lower()
    return name.removeprefix("scikit-image-")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("pool")
    parser.add_argument("eval_dirs", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--near-bits", type=int, default=NEAR_BITS)
    args = parser.parse_args(argv)
    pool, out = Path(args.pool), Path(args.out)
    evaluation = [p for d in args.eval_dirs for p in images(Path(d))]
    signed = {p: signature(p) for p in evaluation}
    rows, kept = [], {"train": [], "val": []}
    for split, folder in (("train", "train"), ("val", "report")):
        for photo in images(pool / folder):
            mine = signature(photo)
            closest, bits, reason = None, 257, ""
            for other, theirs in signed.items():
                d = min(hamming(mine[1], theirs[1]), hamming(mine[2], theirs[2]))
                if d < bits:
                    closest, bits = other, d
                if stem(photo) == other.stem.lower():
                    reason = f"same name as {other}"
                elif mine[0] == theirs[0]:
                    reason = f"same pixels as {other}"
                elif d <= args.near_bits:
                    reason = f"difference hash within {d} bits of {other}"
                if reason:
                    break
            rows.append({"photo": photo.name, "split": split, "closest": closest.name if closest else "",
                         "bits": bits, "left_out": reason})
            if reason:
                print(f"left out {photo}: {reason}", file=sys.stderr)
            else:
                kept[split].append(photo)
    if not kept["train"] or not kept["val"]:
        print(f"error: no {'train' if not kept['train'] else 'val'} photo left in {pool}", file=sys.stderr)
        return 2
    for split, photos in kept.items():
        (out / split).mkdir(parents=True, exist_ok=True)
        for photo in photos:
            shutil.copyfile(photo, out / split / photo.name)
    with open(out / "check.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    closest = min(r["bits"] for r in rows)
    print(f"{len(kept['train'])} train, {len(kept['val'])} val photos in {out}; compared with {len(evaluation)} "
          f"evaluation photos, closest difference hash {closest} bits (a match is <= {args.near_bits})")
    return 0


if __name__ == "__main__":
    Image.MAX_IMAGE_PIXELS = None
    sys.exit(main())
