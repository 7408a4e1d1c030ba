"""PNG at 16 bits per channel for colour images, which Pillow reads and writes only at 8 bits.

Pillow keeps 16 bits for greyscale alone ("I;16"); a 16-bit RGB or RGBA PNG it decodes to 8 bits. This
module reads and writes such files with numpy and zlib: any of PNG's five row filters on reading (undone
along anti-diagonals, so numpy does each step for every row at once), the "Up" filter on writing, the
ICC profile (iCCP) and EXIF (eXIf) chunks both ways. Interlaced (Adam7) files are not read here.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> channels (grey, RGB, grey + alpha, RGBA)
COLOUR_TYPES = {v: k for k, v in CHANNELS.items()}


class PngError(ValueError):
    """A PNG this reader cannot decode (the message says why); Pillow's 8-bit reading is the fallback."""


@dataclass
class Png:
    """Decoded pixels (H,W,C) uint16 or uint8, and the ICC profile and EXIF bytes when the file has them."""

    pixels: np.ndarray
    icc: bytes | None = None
    exif: bytes | None = None


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def encode_png(pixels: np.ndarray, icc: bytes | None = None, exif: bytes | None = None,
               compress_level: int = 1) -> bytes:
    """(H,W) or (H,W,C) uint8/uint16, C in 1..4, as PNG bytes at the array's depth."""
    arr = pixels if pixels.ndim == 3 else pixels[..., None]
    if arr.dtype not in (np.uint8, np.uint16) or arr.shape[2] not in COLOUR_TYPES:
        raise ValueError(f"a PNG holds (H,W,1..4) uint8 or uint16 pixels, got {arr.dtype} {arr.shape}")
    h, w, c = arr.shape
    depth = 8 * arr.dtype.itemsize
    rows = np.ascontiguousarray(arr.astype(arr.dtype.newbyteorder(">"), copy=False)).view(np.uint8).reshape(h, -1)
    up = rows.copy()
    up[1:] -= rows[:-1]  # the Up filter, modulo 256: vertical differences compress well on photos
    raw = np.concatenate([np.full((h, 1), 2, np.uint8), up], axis=1).tobytes()
    out = [SIGNATURE, png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, COLOUR_TYPES[c], 0, 0, 0))]
    if icc:
        out.append(png_chunk(b"iCCP", b"ICC profile\0\0" + zlib.compress(icc)))
    if exif:  # the chunk holds the TIFF structure itself, without JPEG's "Exif" marker
        out.append(png_chunk(b"eXIf", exif.removeprefix(b"Exif\0\0")))
    out += [png_chunk(b"IDAT", zlib.compress(raw, compress_level)), png_chunk(b"IEND", b"")]
    return b"".join(out)


def write_png16(pixels: np.ndarray, path: str | Path, icc: bytes | None = None, exif: bytes | None = None,
                compress_level: int = 1) -> None:
    Path(path).write_bytes(encode_png(pixels, icc, exif, compress_level))


def _unfilter(data: np.ndarray, h: int, w: int, bpp: int) -> np.ndarray:
    """Undo the row filters: (H, 1 + W*bpp) filtered bytes -> (H, W, bpp) bytes. A byte depends on the one
    to its left, above and above-left, so every pixel with the same row + column can be done at once."""
    kinds = data[:, 0].astype(np.int16)
    if kinds.max(initial=0) > 4:
        raise PngError(f"unknown PNG row filter {int(kinds.max())}")
    x = data[:, 1:].reshape(h, w, bpp).astype(np.int16)
    out = np.zeros((h + 1, w + 1, bpp), np.int16)  # a zero row above and a zero column to the left
    for d in range(h + w - 1):
        r = np.arange(max(0, d - w + 1), min(h, d + 1))
        c = d - r
        a, b, cc = out[r + 1, c], out[r, c + 1], out[r, c]
        p = a + b - cc
        pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - cc)
        paeth = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, cc))
        kind = kinds[r][:, None]
        pred = np.where(kind == 1, a, np.where(kind == 2, b, np.where(kind == 3, (a + b) >> 1,
                                                                      np.where(kind == 4, paeth, 0))))
        out[r + 1, c + 1] = (x[r, c] + pred) & 0xFF
    return out[1:, 1:].astype(np.uint8)


def decode_png(blob: bytes) -> Png:
    """A non-interlaced 8- or 16-bit grey, grey + alpha, RGB or RGBA PNG; PngError for anything else."""
    if not blob.startswith(SIGNATURE):
        raise PngError("not a PNG file")
    pos, header, idat, icc, exif = len(SIGNATURE), None, [], None, None
    while pos + 8 <= len(blob):
        length, kind = struct.unpack(">I4s", blob[pos:pos + 8])
        data = blob[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", data)
        elif kind == b"IDAT":
            idat.append(data)
        elif kind == b"iCCP":
            icc = zlib.decompress(data[data.index(b"\0") + 2:])
        elif kind == b"eXIf":
            exif = bytes(data)
        elif kind == b"IEND":
            break
    if header is None:
        raise PngError("no IHDR chunk")
    w, h, depth, colour, _, _, interlace = header
    if colour not in CHANNELS or depth not in (8, 16) or interlace:
        raise PngError(f"colour type {colour}, {depth} bits, interlace {interlace}: not read here")
    c, size = CHANNELS[colour], depth // 8
    try:
        raw = zlib.decompress(b"".join(idat))
    except zlib.error as err:
        raise PngError(f"corrupt image data: {err}") from err
    if len(raw) != h * (1 + w * c * size):
        raise PngError(f"image data holds {len(raw)} bytes, {h * (1 + w * c * size)} expected")
    rows = _unfilter(np.frombuffer(raw, np.uint8).reshape(h, -1), h, w, c * size)
    pixels = rows.reshape(h, w, c * size).view(">u2" if size == 2 else np.uint8).reshape(h, w, c)
    return Png(pixels.astype(np.uint16 if size == 2 else np.uint8), icc, exif)


def read_png(path: str | Path) -> Png:
    return decode_png(Path(path).read_bytes())
