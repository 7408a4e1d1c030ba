"""An image as the upscaler keeps it: the colour the network sees, and what it carries beside the colour.

The network takes RGB in [0,1]. Everything else an image holds is kept around it and put back on the
result: the alpha plane (upscaled on its own, ``upscale_alpha``), greyscale (replicated to RGB for the
network, written back as grey: the BT.601 luma of the result, as Pillow's ``convert("L")``), the bit depth
(16-bit files in [0,65535] are divided by 65535 and written back at 16 bits), the ICC profile and the
EXIF (files are turned upright by their orientation, and the kept EXIF then says orientation 1).

Which modes become what: docs/cli.md, "What comes out".
"""

from __future__ import annotations

import struct
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

from pcsr_lightning.io.files import atomic_write
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, PNG_COMPRESS_LEVEL, integer_range, open_image, pil_to_raw
from pcsr_lightning.io.png16 import PngError, encode_png, read_png

ORIENTATION = 0x0112  # the EXIF tag
GREY_MODES = ("1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F")
SIXTEEN_BIT_PNG = ("RGB;16B", "RGBA;16B", "LA;16B")  # Pillow's raw modes of the colour PNGs it reads at 8 bits
LUMA = (0.299, 0.587, 0.114)  # BT.601, Pillow's weights for RGB -> L
ALPHA_CHOICES = ("bicubic", "model")
JPEG_QUALITY = 95  # JPEG and WebP: 95 keeps an SR result's detail (Pillow's default, 75, smears it)


@dataclass
class Picture:
    """The colour the network runs on and what the image carries beside it."""

    colour: torch.Tensor  # (3,H,W) float32 in [0,1]; uint8 (0..255) for 8-bit images, to keep memory small
    alpha: torch.Tensor | None = None  # (1,H,W) float32 in [0,1], None without transparency
    grey: bool = False  # written back as one channel
    depth: int = 8  # bits per channel of the file: 8 or 16
    icc: bytes | None = None
    exif: bytes | None = None

    @property
    def channels(self) -> int:
        """Channels the result is written with: 1 grey, 2 grey + alpha, 3 RGB, 4 RGBA."""
        return (1 if self.grey else 3) + (self.alpha is not None)


# What each output format holds: channel counts at 8 bits and at 16 bits (16-bit colour PNG by ``png16``).
# WebP has no grey: grey is written as RGB there. BMP and PPM drop an alpha plane, so they take none.
FORMATS = {
    "PNG": ({1, 2, 3, 4}, {1, 2, 3, 4}),
    "JPEG": ({1, 3}, set()),
    "WEBP": ({3, 4}, set()),
    "TIFF": ({1, 2, 3, 4}, {1}),
    "BMP": ({1, 3}, set()),
    "PPM": ({1, 3}, {1}),
}
EXTENSIONS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF",
              ".bmp": "BMP", ".ppm": "PPM"}


def format_of(path: str | Path) -> str:
    """The format a file is written in, by its extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in EXTENSIONS:
        raise ValueError(f"{path}: cannot write images with the extension {suffix or '(none)'}; "
                         f"use one of {', '.join(EXTENSIONS)}")
    return EXTENSIONS[suffix]


def holds_alpha(path: str | Path) -> bool:
    """Whether the image file has transparency, from its header (nothing decoded)."""
    with Image.open(path) as img:
        return img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
            img.mode in ("P", "L", "RGB") and "transparency" in img.info)


def _exif_upright(exif_bytes: bytes | None) -> tuple[int, bytes | None]:
    """The orientation an EXIF block says, and the block with it reset to 1 (None when there is no EXIF)."""
    if not exif_bytes:
        return 1, None
    exif = Image.Exif()
    try:
        exif.load(exif_bytes)
        orientation = int(exif.get(ORIENTATION, 1) or 1)
    except (ValueError, TypeError, KeyError, SyntaxError, OSError, struct.error):
        return 1, None  # a block Pillow cannot parse is not carried (it could say any orientation)
    if ORIENTATION in exif:
        exif[ORIENTATION] = 1
    return orientation, exif.tobytes()


def upright_array(arr: np.ndarray, orientation: int) -> np.ndarray:
    """``ImageOps.exif_transpose`` on a (H,W,C) array (16-bit colour has no Pillow image to do it)."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1),
           7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, 1)}
    return np.ascontiguousarray(ops[orientation](arr)) if orientation in ops else arr


def _from_array(arr: np.ndarray, grey: bool, depth: int, icc: bytes | None, exif: bytes | None) -> Picture:
    """(H,W,C) uint8/uint16 -> Picture: the last channel of 2 or 4 is the alpha."""
    peak = float((1 << depth) - 1)
    planes = torch.from_numpy(arr.astype(np.float32) / peak).permute(2, 0, 1)
    alpha = planes[-1:].contiguous() if arr.shape[2] in (2, 4) else None
    colour = planes[:1].expand(3, -1, -1) if grey else planes[:3]
    return Picture(colour.contiguous(), alpha, grey, depth, icc, exif)


def from_pil(img: Image.Image, source: str | Path = "image", int_range: tuple[float, str] | None = None) -> Picture:
    """A PIL image as a Picture. Its pixels are taken as given (the Python API does not rotate them);
    the ICC profile and EXIF are its ``info``'s. Palette images become RGB (RGBA with transparency),
    CMYK and other colour spaces RGB (their ICC profile then no longer fits and is dropped)."""
    icc, exif = img.info.get("icc_profile") or None, img.info.get("exif") or None
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        arr = np.asarray(img).astype(np.uint16)[..., None]
        return _from_array(arr, True, 16, icc, exif)
    if img.mode in ("I", "F"):  # 32-bit integer and float grey: the reader's value rules, written at 16 bits
        return Picture(pil_to_raw(img, source, int_range).float(), None, True, 16, icc, exif)
    has_alpha = img.mode in ("RGBA", "LA", "La", "RGBa", "PA") or "transparency" in img.info
    grey = img.mode in GREY_MODES
    target = ("LA" if has_alpha else "L") if grey else ("RGBA" if has_alpha else "RGB")
    if img.mode == "P" and has_alpha:
        img = img.convert("RGBA")  # the palette's transparency becomes the alpha plane
    converted = img if img.mode == target else img.convert(target)
    arr = np.asarray(converted, dtype=np.uint8)
    arr = arr[..., None] if arr.ndim == 2 else arr
    if img.mode not in ("RGB", "RGBA", "P", "PA", *GREY_MODES):
        icc = None  # CMYK, YCbCr, LAB ...: the profile describes the colour space the pixels left
    planes = torch.from_numpy(arr.copy()).permute(2, 0, 1)
    alpha = planes[-1:].float().div_(255.0) if has_alpha else None
    colour = planes[:1].expand(3, -1, -1).contiguous() if grey else planes[:3].contiguous()
    return Picture(colour, alpha, grey, 8, icc, exif)


def raw_mode(img: Image.Image) -> str | None:
    """How the file stores its pixels (before Pillow decodes them), e.g. ``RGB;16B``."""
    if not img.tile:
        return None
    args = img.tile[0].args
    return args if isinstance(args, str) else (args[0] if args and isinstance(args[0], str) else None)


def open_picture(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Picture:
    """An image file as a Picture, turned upright by its EXIF orientation (which the kept EXIF then resets
    to 1, so viewers do not turn it twice). 16-bit colour PNGs keep their 16 bits (``png16``); ImageReadError
    naming the file as ``read_image``."""
    path = Path(path)

    def picture(img: Image.Image) -> Picture:
        if img.format == "PNG" and raw_mode(img) in SIXTEEN_BIT_PNG:
            try:
                png = read_png(path)
            except PngError as err:
                warnings.warn(f"{path}: read at 8 bits per channel ({err})", stacklevel=2)
            else:
                orientation, exif = _exif_upright(png.exif or img.info.get("exif"))
                return _from_array(upright_array(png.pixels, orientation), png.pixels.shape[2] < 3, 16,
                                   png.icc or img.info.get("icc_profile"), exif)
        img.load()
        int_range = integer_range(img, path)  # from the file's own tags, before any transpose
        _, exif = _exif_upright(img.info.get("exif"))
        upright = ImageOps.exif_transpose(img)
        return replace(from_pil(upright, path, int_range), exif=exif)

    return open_image(path, max_pixels, picture)


def check_alpha_choice(alpha: str) -> str:
    if alpha not in ALPHA_CHOICES:
        raise ValueError(f"alpha must be one of {list(ALPHA_CHOICES)}, got {alpha!r}")
    return alpha


def upscale_alpha(alpha: torch.Tensor, size: tuple[int, int], how: str = "bicubic",
                  network: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """(B,1,h,w) alpha in [0,1] -> (B,1,H,W): torch's bicubic (``bicubic``), or the network's result on the
    alpha replicated to RGB, each channel clamped as a colour result is, then averaged (``model``, as Real-ESRGAN's
    alpha upsampler)."""
    check_alpha_choice(alpha=how)
    if how == "bicubic":
        out = F.interpolate(alpha.float(), size=size, mode="bicubic", align_corners=False)
    else:
        if network is None:
            raise ValueError("alpha='model' needs the network to run the alpha through")
        out = network(alpha.expand(-1, 3, -1, -1)).float().clamp(0, 1).mean(1, keepdim=True)
    return out.clamp(0, 1)


def result_pixels(picture: Picture, sr: torch.Tensor, alpha: torch.Tensor | None, depth: int | None = None
                  ) -> np.ndarray:
    """(H,W,C) uint8 or uint16 of an SR colour (3,H,W) (not clamped) and an upscaled alpha (1,H,W): grey as the
    luma, at ``depth`` bits (default the picture's), rounded as ``write_png`` rounds."""
    depth = depth or picture.depth
    peak = float((1 << depth) - 1)
    sr = sr.detach().float().cpu().clamp(0, 1)  # a new tensor: the in-place steps below leave the caller's alone
    if picture.grey:
        sr = (LUMA[0] * sr[0] + LUMA[1] * sr[1] + LUMA[2] * sr[2])[None].clamp(0, 1)
    planes = sr if alpha is None else torch.cat([sr, alpha.detach().float().cpu().clamp(0, 1)])
    values = planes.mul_(peak).round_().to(torch.int32 if depth == 16 else torch.uint8).permute(1, 2, 0).numpy()
    return values.astype(np.uint16) if depth == 16 else values


def to_pil(pixels: np.ndarray) -> Image.Image:
    """(H,W,C) pixels as a PIL image: L, LA, RGB, RGBA, or I;16 for 16-bit grey (Pillow has no 16-bit
    colour mode: a 16-bit colour result is an array, written by ``save_picture``)."""
    c = pixels.shape[2]
    if pixels.dtype == np.uint16:
        if c != 1:
            raise ValueError("Pillow holds 16-bit grey only; write 16-bit colour with save_picture")
        return Image.fromarray(np.ascontiguousarray(pixels[..., 0]))
    return Image.fromarray(np.ascontiguousarray(pixels if c > 1 else pixels[..., 0]), {1: "L", 2: "LA", 3: "RGB",
                                                                                       4: "RGBA"}[c])


def kept_in(fmt: str, picture: Picture) -> tuple[bytes | None, bytes | None]:
    """The ICC profile and EXIF a result in ``fmt`` carries (BMP and PPM have no place for them)."""
    if fmt in ("BMP", "PPM"):
        return None, None
    channels = max(picture.channels, 3) if fmt == "WEBP" else picture.channels
    return icc_fits(picture.icc, channels), picture.exif


def icc_fits(icc: bytes | None, channels: int) -> bytes | None:
    """The profile when its colour space (bytes 16-20 of the header) is the one written, else None."""
    if not icc or len(icc) < 20:
        return None
    space = icc[16:20]
    return icc if space == (b"GRAY" if channels < 3 else b"RGB ") else None


def depth_for(fmt: str, channels: int, depth: int) -> int:
    """The depth a format writes an image at: 16 where it holds 16 bits for these channels, else 8."""
    return 16 if depth == 16 and channels in FORMATS[fmt][1] else 8


def save_picture(pixels: np.ndarray, path: str | Path, icc: bytes | None = None, exif: bytes | None = None,
                 overwrite: bool = True, compress_level: int = PNG_COMPRESS_LEVEL) -> Path:
    """Write (H,W,C) uint8/uint16 pixels atomically in the format of ``path``'s extension, with the ICC
    profile (where it fits the channels written) and the EXIF; a format that cannot hold the channels is
    refused (``FORMATS``)."""
    fmt = format_of(path)
    c = pixels.shape[2]
    if pixels.dtype == np.uint16 and c not in FORMATS[fmt][1]:
        raise ValueError(f"{path}: {fmt} cannot hold {c}-channel 16-bit pixels")
    if fmt == "WEBP" and c < 3:  # WebP has no grey
        pixels = np.concatenate([np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1:]], axis=2)
        c += 2
    if c not in FORMATS[fmt][0]:
        raise ValueError(f"{path}: {fmt} cannot hold {'transparency' if c in (2, 4) else f'{c} channels'}")
    icc = icc_fits(icc, c)
    options: dict = {k: v for k, v in (("icc_profile", icc), ("exif", exif)) if v}
    if fmt in ("BMP", "PPM"):
        options = {}
    elif fmt == "PNG":
        options["compress_level"] = compress_level
    elif fmt in ("JPEG", "WEBP"):
        options["quality"] = JPEG_QUALITY

    def write(tmp: Path) -> None:
        if fmt == "PNG" and pixels.dtype == np.uint16 and c > 1:
            tmp.write_bytes(encode_png(pixels, icc, exif, compress_level))
        else:
            to_pil(pixels).save(tmp, format=fmt, **options)

    return atomic_write(path, write, overwrite=overwrite)
