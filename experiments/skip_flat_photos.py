"""The photo sets of ``skip_flat.sh``: centre crops of a photo folder at one HR size, split into a validation
set (where the gate's threshold is chosen) and a test set (where it is reported).

Photos smaller than the size are left out; a photo larger than twice the size in both axes is first
shrunk by MATLAB-style bicubic (antialiased) so that the crop keeps most of the scene. Usage:
    python experiments/skip_flat_photos.py PHOTOS [PHOTOS ...] OUT --hr-size 1080x1920 [--only NAME ...]
(each PHOTOS a folder or one image file) writes OUT/val/*.png and OUT/test/*.png; ``--split none`` writes
every photo to OUT/all/*.png instead (for choices made leaving one photo out). ``--portrait`` also takes a
photo that fits the size only turned a quarter turn, turned (large photos are few; a turned photo is still
a photo). ``--textures`` also writes OUT/textured/*.png: scikit-image's
texture photos (brick, grass, gravel) mirror-tiled to the size, a deliberately textured set on which the
gate should find little to skip (no threshold is chosen on it). ``--samples`` writes OUT/skimage/*.png:
scikit-image's other photos at their own size (about 512x512; none trained the released checkpoints).
"""

import argparse
from pathlib import Path

import torch

from pcsr_lightning.bench.inputs import parse_size
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.samples import materialize_samples, sample_split
from pcsr_lightning.data.sources import sample_photo
from pcsr_lightning.io.images import list_images, read_image, write_png

VALIDATION_EVERY = 3  # every third eligible photo (sorted by name, starting at the second) is validation
TEXTURES = ("brick", "grass", "gravel")  # scikit-image's 512x512 texture photos (grayscale)


def centre_crop(img, size):
    (h, w), (hh, ww) = img.shape[-2:], size
    y0, x0 = (h - hh) // 2, (w - ww) // 2
    return img[:, y0 : y0 + hh, x0 : x0 + ww]


def fit(img, size):
    """Shrunk (keeping the aspect ratio) while both sides stay at least the crop, then cropped."""
    (h, w), (hh, ww) = img.shape[-2:], size
    shrink = max(hh / h, ww / w)
    if shrink <= 0.5:
        img = imresize(img, (max(hh, round(h * shrink)), max(ww, round(w * shrink)))).clamp(0, 1)
    return centre_crop(img, size)


def mirror_tiled(img, size):
    """``img`` repeated by reflection (no seams: each copy mirrors its neighbour) until it covers ``size``."""
    (h, w), (hh, ww) = img.shape[-2:], size
    row = torch.cat([img, img.flip(-1)], -1).repeat(1, 1, -(-ww // (2 * w)))
    full = torch.cat([row, row.flip(-2)], -2).repeat(1, -(-hh // (2 * h)), 1)
    return full[:, :hh, :ww]


def write_textures(out, size):
    for name in TEXTURES:
        target = Path(out) / "textured" / f"texture_{name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            write_png(mirror_tiled(sample_photo(name), size), target)
        print(f"textured: {target}")


def photo_paths(sources: list[str]) -> list[Path]:
    """Image files from folders (their images, sorted) and single files, in the order given."""
    return [p for source in sources for p in (list_images(source) if Path(source).is_dir() else [Path(source)])]


def fitting(img, size, portrait: bool):
    """``img``, or ``img`` turned a quarter turn when only that fits ``size`` and ``portrait``; None if neither."""
    if img.shape[-2] >= size[0] and img.shape[-1] >= size[1]:
        return img
    if portrait and img.shape[-1] >= size[0] and img.shape[-2] >= size[1]:
        return img.rot90(1, (-2, -1))
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photos", nargs="+", help="folders of photos or photo files")
    parser.add_argument("out")
    parser.add_argument("--hr-size", default="1080x1920")
    parser.add_argument("--only", nargs="*", help="photo stems to keep (all eligible ones by default)")
    parser.add_argument("--textures", action="store_true", help="also write the textured set")
    parser.add_argument("--samples", action="store_true", help="also write scikit-image's other photos")
    parser.add_argument("--split", choices=("fixed", "none"), default="fixed",
                        help="fixed: every third photo validation, the others test; none: all to OUT/all")
    parser.add_argument("--portrait", action="store_true", help="also photos that fit turned a quarter turn")
    args = parser.parse_args()
    size = parse_size(args.hr_size)
    if args.textures:
        write_textures(args.out, size)
    if args.samples:
        # motorcycle_right: the other view of motorcycle_left's scene, counted once
        names = [n for n in sample_split("train") + sample_split("val") if n not in (*TEXTURES, "motorcycle_right")]
        print(f"skimage: {materialize_samples(Path(args.out) / 'skimage', names)} ({len(names)} photos)")
    eligible = []
    for path in photo_paths(args.photos):
        img = fitting(read_image(path), size, args.portrait)
        if img is not None:
            eligible.append((path, img))
    for i, (path, img) in enumerate(eligible):
        if args.only and path.stem not in args.only:
            continue
        split = "all" if args.split == "none" else "val" if i % VALIDATION_EVERY == 1 else "test"
        target = Path(args.out) / split / f"{path.stem}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            write_png(fit(img, size), target)
        print(f"{split}: {target}")


if __name__ == "__main__":
    main()
