"""What a file holds, told by its first bytes rather than its name: a model file is read as what it is
(a renamed safetensors file still loads), and a file that is no model file is named with what it looks
like (``a PNG image``) instead of an unpickler's opcode error."""

from __future__ import annotations

import struct
from pathlib import Path

CKPT, SAFETENSORS = "ckpt", "safetensors"
# first bytes of files a user may pass by mistake, and what to call them
SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"), (b"GIF8", "a GIF image"),
    (b"II*\x00", "a TIFF image"), (b"MM\x00*", "a TIFF image"), (b"BM", "a BMP image"),
    (b"\x1f\x8b", "a gzip archive"), (b"7z\xbc\xaf", "a 7-Zip archive"), (b"%PDF", "a PDF document"),
    (b"\x7fELF", "a program (ELF)"), (b"version https://git-lfs", "a Git LFS pointer (the weights were not "
                                                                   "downloaded: run `git lfs pull`)"),
)
HEAD = 64


def read_head(path: str | Path, n: int = HEAD) -> bytes:
    with open(path, "rb") as f:
        return f.read(n)


def sniff(head: bytes, size: int) -> str:
    """``CKPT`` (a torch zip archive or a pickle), ``SAFETENSORS`` (an 8-byte header length that fits the
    file, then a JSON object), or a few words saying what else the bytes look like."""
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        return CKPT
    if len(head) >= 9:
        (length,) = struct.unpack("<Q", head[:8])
        if 2 <= length <= size - 8 and head[8:9] == b"{":
            return SAFETENSORS
    for signature, name in SIGNATURES:
        if head.startswith(signature):
            return name
    text = head.lstrip()
    if text[:1] in (b"{", b"["):
        return "JSON or other text"
    if head and all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        return "text"
    return "data of an unknown kind"


def file_kind(path: str | Path) -> str:
    """``sniff`` of a file (OSError when it cannot be opened)."""
    path = Path(path)
    return sniff(read_head(path), path.stat().st_size)
