"""Reading any image as RGB float, and writing PNGs atomically.

Pixel values: every integer image is divided by the largest value of its own type: 8-bit by 255, 16-bit
(PNG, TIFF, PGM/PPM) by 65535. A TIFF of signed samples (int8, int16, int32), one of unsigned samples
wider than 16 bits, and a 32-bit integer image whose type the file does not say are refused, naming the
type. A float image ("F", e.g. a float TIFF) is taken as it is and clipped to [0,1]; one with a NaN or inf pixel is
refused, naming the file and how many pixels are bad. An image is never written with a NaN or inf.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from pcsr_lightning.io.files import OutputError, atomic_write

T = TypeVar("T")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
# Largest image read (width x height): an 8K frame (33 Mpx) fits; a decompression bomb (a small file
# declaring a huge size) or a 100-Mpx photo is refused before any pixel is decoded. Pillow refuses on
# its own above twice its MAX_IMAGE_PIXELS (179 Mpx), so that is the most a limit can allow.
DEFAULT_MAX_PIXELS = 40_000_000
HARD_MAX_PIXELS = 2 * Image.MAX_IMAGE_PIXELS
# zlib level of the PNGs the commands write: Pillow's own default (6) spends several times longer compressing
# for files about 15 % smaller (docs/performance.md, "Writing the PNGs").
PNG_COMPRESS_LEVEL = 1


class ImageReadError(ValueError):
    """An image that cannot be decoded; the message names the file."""


def unusable_entry(path: Path) -> str | None:
    """Why a folder entry with an image's name cannot be read as a file (None when it can)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "a dangling symbolic link" if path.is_symlink() else "gone"
    except OSError as err:
        return f"cannot be examined ({err.strerror or err})"
    kinds = {stat.S_ISDIR: "a folder", stat.S_ISFIFO: "a named pipe (FIFO)", stat.S_ISSOCK: "a socket",
             stat.S_ISCHR: "a device", stat.S_ISBLK: "a device"}
    kind = next((name for test, name in kinds.items() if test(mode)), None)
    if kind is not None:
        return f"{kind}, not a file"
    if not os.access(path, os.R_OK):
        return "not readable (permission denied)"
    return None


def warn_skipped(path: Path, reason: str) -> None:
    warnings.warn(f"skipping {path}: {reason}", stacklevel=3)


def list_images(folder: str | Path, on_skip: Callable[[Path, str], None] | None = warn_skipped) -> list[Path]:
    """The image files of ``folder`` (by extension, not recursive), sorted. Entries with an image's name
    that are no readable file (dangling links, pipes, unreadable files) are left out and each passed to
    ``on_skip(path, reason)`` (default: a warning); ``None`` leaves them out silently."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    try:
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
    except OSError as err:
        raise FileNotFoundError(f"cannot list image folder {folder}: {err.strerror or err}") from err
    images = []
    for path in entries:
        reason = unusable_entry(path)
        if reason is None:
            images.append(path)
        elif on_skip is not None:
            on_skip(path, reason)
    return images


def non_finite(img: torch.Tensor | np.ndarray) -> int:
    """How many values of a float image are NaN or inf (0 for integer images)."""
    if isinstance(img, np.ndarray):
        return int(img.size - np.isfinite(img).sum()) if np.issubdtype(img.dtype, np.inexact) else 0
    return int(img.numel() - torch.isfinite(img).sum()) if img.is_floating_point() else 0


# the TIFF tags that say an integer sample's width and whether it is signed
TIFF_BITS, TIFF_SAMPLE_FORMAT, TIFF_SIGNED = 258, 339, 2


def integer_range(img: Image.Image, source: str | Path = "image") -> tuple[float, str] | None:
    """The largest value of a 32-bit integer ("I") image's own type and the type's name, as the file says
    it (a 16-bit PPM/PGM); None for an image of another mode. ImageReadError naming the type for a TIFF of
    signed samples (any width: the decoder would wrap negative values into bright ones), one of unsigned
    samples wider than 16 bits (read as signed), and an "I" image of no stated type."""
    tags = getattr(img, "tag_v2", None)
    if tags is not None and TIFF_BITS in tags:
        bits, kind = (tags.get(tag, default) for tag, default in ((TIFF_BITS, 8), (TIFF_SAMPLE_FORMAT, 1)))
        bits, kind = (int(v[0] if isinstance(v, tuple) else v) for v in (bits, kind))
        if kind == TIFF_SIGNED:
            raise ImageReadError(f"{source}: its pixels are signed int{bits} (a TIFF of signed samples): no range "
                                 "of brightness is agreed for negative values; convert it to 8- or 16-bit unsigned "
                                 "or to float in [0, 1]")
        if img.mode == "I":
            raise ImageReadError(f"{source}: its pixels are uint{bits} (a TIFF of {bits}-bit unsigned samples), "
                                 "wider than the 16 bits read faithfully; convert it to 16-bit or to float in [0, 1]")
        return None
    if img.mode != "I":
        return None
    if img.format == "PPM":
        return 65535.0, "uint16"  # Pillow reads a PPM/PGM of more than 8 bits as 16-bit values
    of = f" of a {img.format} file" if img.format else ""
    raise ImageReadError(f"{source}: its pixels are 32-bit integers (mode I{of}) of no stated range; give 8- or "
                         "16-bit unsigned pixels or floats in [0, 1]")


def pil_to_raw(img: Image.Image, source: str | Path = "image",
               int_range: tuple[float, str] | None = None) -> torch.Tensor:
    """(3,H,W): uint8 for 8-bit images (4x smaller to keep in memory), float32 in [0,1] otherwise.

    Grayscale, palette, alpha and 16-bit images become plain RGB (what eval and training read; the upscaler
    keeps them, ``io.picture``). ``as_float`` gives the [0,1] float.
    The value rules are in the module's docstring; ImageReadError naming ``source`` for NaN or inf pixels
    and for integer pixels of no agreed range. ``int_range``: ``integer_range`` of the file the image
    was decoded from (a transposed copy no longer carries the file's tags).
    """
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak, name = (65535.0, "uint16") if img.mode.startswith("I;16") else int_range or integer_range(img, source)
        if arr.size and (arr.min() < 0 or arr.max() > peak):
            raise ImageReadError(f"{source}: pixel values {arr.min():.0f} to {arr.max():.0f} lie outside the range "
                                 f"of its type {name} (0 to {peak:.0f})")
        arr = np.repeat((arr / peak)[..., None], 3, axis=2)
        return torch.from_numpy(arr.astype(np.float32)).permute(2, 0, 1).contiguous()
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        bad = non_finite(arr)
        if bad:
            raise ImageReadError(f"{source}: {bad:,} of {arr.size:,} pixels are not finite (NaN or inf); "
                                 "refusing the image (finite values outside [0,1] would be clipped)")
        return torch.from_numpy(np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=2)).permute(2, 0, 1).contiguous()
    if img.mode != "RGB":
        img = img.convert("RGB")
    return torch.from_numpy(np.asarray(img, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()


def as_float(img: torch.Tensor) -> torch.Tensor:
    """uint8 (0..255) or float image -> float32 in [0,1]."""
    return img.float().div_(255.0) if img.dtype == torch.uint8 else img


def read_image_raw(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """``pil_to_raw`` of a file, turned upright by its EXIF orientation; raises ImageReadError naming the
    file when it cannot be decoded or has more than ``max_pixels`` pixels (checked on the header, before
    decoding)."""

    def raw(img: Image.Image) -> torch.Tensor:
        img.load()
        int_range = integer_range(img, path)  # from the file's own tags, before any transpose
        return pil_to_raw(ImageOps.exif_transpose(img), path, int_range)

    return open_image(path, max_pixels, raw)


def open_image(path: str | Path, max_pixels: int, decode: Callable[[Image.Image], T]) -> T:
    """``decode(img)`` of the opened file (not yet loaded) once its header's size is within ``max_pixels``,
    with every failure an ImageReadError naming the file (a missing file stays FileNotFoundError)."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            # Pillow warns between its own limit and twice it; ``max_pixels`` decides instead, below.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)
        with img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageReadError(f"{path}: {w}x{h} = {w * h:,} pixels is above --max-pixels {max_pixels:,}")
            return decode(img)
    except FileNotFoundError:
        raise
    except Image.DecompressionBombError as err:
        raise ImageReadError(f"{path}: refused as a decompression bomb "
                             f"(limit --max-pixels {max_pixels:,}): {err}") from err
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as err:
        if isinstance(err, ImageReadError):
            raise
        raise ImageReadError(f"cannot read image {path}: {err}") from err
    except MemoryError as err:
        raise ImageReadError(f"{path}: not enough memory to decode it") from err


def read_image(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> torch.Tensor:
    """(3,H,W) float32 RGB in [0,1]; raises ImageReadError naming the file when it cannot be read."""
    return as_float(read_image_raw(path, max_pixels))


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(3,H,W) float in [0,1] -> (H,W,3) uint8, rounding as the PSNR protocol does."""
    return img.detach().float().clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def check_png_level(level: int) -> int:
    """zlib's levels: 0 (stored, fastest, largest) to 9 (smallest, slowest)."""
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= 9:
        raise ValueError(f"PNG compression level must be an integer from 0 to 9, got {level!r}")
    return level


def write_png(img: torch.Tensor | np.ndarray, path: str | Path, overwrite: bool = True,
              compress_level: int = PNG_COMPRESS_LEVEL) -> Path:
    """Write (3,H,W) float [0,1] or (H,W,3) uint8 as PNG, atomically; an image with NaN or inf is
    refused (rounding would turn them into arbitrary colours). ``overwrite=False``: an existing file
    is never replaced (see ``atomic_write``). ``compress_level`` trades the write's time against the
    file's size; the pixels are the same at every level."""
    check_png_level(compress_level)
    bad = non_finite(img)
    if bad:
        total = img.numel() if isinstance(img, torch.Tensor) else img.size
        raise OutputError(f"refusing to write {path}: {bad:,} of {total:,} values are not finite (NaN or inf)")
    arr = to_uint8(img) if isinstance(img, torch.Tensor) else img
    return atomic_write(path, lambda tmp: Image.fromarray(arr).save(tmp, format="PNG", compress_level=compress_level),
                        overwrite=overwrite)


# Heaviest first: red, orange, yellow, ... lightest green/blue.
PALETTE = torch.tensor(
    [[230, 40, 40], [40, 180, 60], [250, 160, 30], [60, 110, 230], [240, 230, 50], [160, 60, 200]], dtype=torch.float32
) / 255


def class_overlay(sr: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Blend each pixel's upsampler colour over a gray copy of the SR image: (3,H,W). Pixels the
    flat-tile gate skipped (class ``num_classes``) stay plain gray."""
    palette = PALETTE if num_classes <= 2 else PALETTE[[0, 2, 4, 1, 3, 5]]
    classes = classes.long().cpu()
    colours = palette[classes % len(palette)].permute(2, 0, 1)
    gray = sr.cpu().clamp(0, 1).mean(0, keepdim=True).expand(3, -1, -1)
    return torch.where(classes == num_classes, gray, 0.45 * gray + 0.55 * colours)
