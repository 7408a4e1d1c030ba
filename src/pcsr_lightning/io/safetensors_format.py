"""The safetensors file format, read and written with the standard library and torch only.

A file is 8 bytes (little-endian u64 N), N bytes of UTF-8 JSON naming each tensor's dtype, shape and byte
range, then the data buffer. Unlike a pickle, reading one runs no code; this reader also checks the whole
header (types, sizes, a buffer covered exactly once) before it builds any tensor, so a damaged or crafted
file is refused with a message naming the file, the problem and the tensor, never half-loaded.
Files are little-endian, as the format says: big-endian hosts are refused rather than misread.
"""

from __future__ import annotations

import json
import math
import os
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import torch

from pcsr_lightning.io.files import atomic_write

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
    "U8": torch.uint8, "BOOL": torch.bool,
}
CODES: dict[torch.dtype, str] = {dtype: code for code, dtype in DTYPES.items()}
METADATA_KEY = "__metadata__"
ENTRY_KEYS = ("dtype", "shape", "data_offsets")
MAX_HEADER_BYTES = 100_000_000  # the official limit: a larger header is a damaged or hostile file
_LENGTH = struct.Struct("<Q")


class SafetensorsError(ValueError):
    """A file that is not a valid safetensors file, or tensors that cannot be written as one; the message
    names the file, the problem and, where one is at fault, the tensor."""


@dataclass(frozen=True)
class _Entry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


class _DuplicateKey(ValueError):
    pass


# ---------------------------------------------------------------- writing


def write_safetensors(path: str | Path, tensors: Mapping[str, torch.Tensor],
                      metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``tensors`` (sorted by name, packed with no gaps) and ``metadata`` to ``path`` atomically:
    readers see the old file or the complete new one, and a failed write leaves no temporary file."""
    path = Path(path)
    _check_little_endian(path)
    prepared = _prepare_tensors(path, tensors)
    header = _encode_header(path, prepared, _check_metadata_to_write(path, metadata))
    return atomic_write(path, lambda tmp: _write_file(tmp, header, prepared))


def _prepare_tensors(path: Path, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Check every name and tensor before anything is written; tensors become contiguous CPU tensors."""
    if not isinstance(tensors, Mapping):
        raise SafetensorsError(f"cannot write {path}: tensors must be a mapping of names to tensors")
    for name in tensors:
        _check_name_to_write(path, name)
    return {name: _prepare_tensor(path, name, tensors[name]) for name in sorted(tensors)}


def _check_name_to_write(path: Path, name: Any) -> None:
    if not isinstance(name, str):
        raise SafetensorsError(f"cannot write {path}: tensor name {name!r} is not a string")
    if name == METADATA_KEY:
        raise SafetensorsError(f"cannot write {path}: {METADATA_KEY!r} is reserved for the metadata")
    _check_encodable(path, name, f"tensor name {name!r}")


def _prepare_tensor(path: Path, name: str, tensor: Any) -> torch.Tensor:
    if not isinstance(tensor, torch.Tensor):
        raise SafetensorsError(f"cannot write {path}: {name!r} is a {type(tensor).__name__}, not a tensor")
    if tensor.dtype not in CODES:
        raise SafetensorsError(f"cannot write {path}: tensor {name!r} has unsupported dtype {tensor.dtype} "
                               f"(supported: {', '.join(str(d) for d in CODES)})")
    if tensor.layout != torch.strided or tensor.is_meta:
        raise SafetensorsError(f"cannot write {path}: tensor {name!r} holds no dense data ({tensor.layout}, "
                               f"device {tensor.device})")
    return tensor.detach().cpu().contiguous()


def _check_metadata_to_write(path: Path, metadata: Mapping[str, str] | None) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise SafetensorsError(f"cannot write {path}: metadata must be a mapping of strings to strings")
    for key, value in metadata.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise SafetensorsError(f"cannot write {path}: metadata {key!r}: {value!r} is not a string to a string")
        _check_encodable(path, key, f"metadata key {key!r}")
        _check_encodable(path, value, f"metadata value of {key!r}")
    return dict(metadata)


def _check_encodable(path: Path, text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise SafetensorsError(f"cannot write {path}: {what} is not valid Unicode ({err.reason})") from err


def _encode_header(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """The 8-byte length and the JSON header, padded with spaces to a multiple of 8 bytes."""
    header: dict[str, Any] = {METADATA_KEY: metadata} if metadata else {}
    offset = 0
    for name, tensor in tensors.items():
        end = offset + _nbytes(tensor)
        header[name] = {"dtype": CODES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [offset, end]}
        offset = end
    raw = json.dumps(header, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    if len(raw) > MAX_HEADER_BYTES:
        raise SafetensorsError(f"cannot write {path}: the header would be {len(raw)} bytes, over the "
                               f"{MAX_HEADER_BYTES}-byte limit readers accept")
    return _LENGTH.pack(len(raw)) + raw


def _write_file(tmp: Path, header: bytes, tensors: dict[str, torch.Tensor]) -> None:
    """Fill the (already created, empty) temporary file and flush it to the disk before it is renamed."""
    with open(tmp, "r+b") as f:
        f.write(header)
        for tensor in tensors.values():
            _write_tensor(f, tensor)
        f.flush()
        os.fsync(f.fileno())


def _write_tensor(f: BinaryIO, tensor: torch.Tensor) -> None:
    """The tensor's bytes in memory order (little-endian on a little-endian host), copied without numpy."""
    nbytes = _nbytes(tensor)
    if nbytes == 0:
        return
    buf = bytearray(nbytes)
    torch.frombuffer(buf, dtype=torch.uint8).copy_(tensor.reshape(-1).view(torch.uint8))
    f.write(buf)


def _nbytes(tensor: torch.Tensor) -> int:
    return tensor.numel() * tensor.element_size()


# ---------------------------------------------------------------- reading


def read_safetensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors (independent CPU tensors, by name) and the metadata of a safetensors file; the whole
    header is validated before any data is read."""
    path = Path(path)
    _check_little_endian(path)
    with _open(path) as f:
        entries, metadata, data_start = _read_header(path, f)
        tensors = {e.name: _read_tensor(path, f, data_start, e) for e in entries}
    return {name: tensors[name] for name in sorted(tensors)}, metadata


def read_safetensors_header(path: str | Path) -> tuple[dict[str, tuple[str, tuple[int, ...]]], dict[str, str]]:
    """Each tensor's dtype code and shape, and the metadata, from the validated header alone: describes a
    file of any size cheaply (the data is not read, so it is not checked either)."""
    path = Path(path)
    with _open(path) as f:
        entries, metadata, _ = _read_header(path, f)
    return {e.name: (e.dtype, e.shape) for e in sorted(entries, key=lambda e: e.name)}, metadata


def _open(path: Path) -> BinaryIO:
    try:
        return open(path, "rb")
    except FileNotFoundError as err:
        raise SafetensorsError(f"cannot read {path}: no such file") from err
    except IsADirectoryError as err:
        raise SafetensorsError(f"cannot read {path}: it is a folder, not a file") from err
    except OSError as err:
        raise SafetensorsError(f"cannot read {path}: {err.strerror or err}") from err


def _invalid(path: Path, problem: str) -> SafetensorsError:
    return SafetensorsError(f"{path} is not a valid safetensors file: {problem}")


def _read_header(path: Path, f: BinaryIO) -> tuple[list[_Entry], dict[str, str], int]:
    """The validated entries, the metadata and where the data buffer starts."""
    size = os.fstat(f.fileno()).st_size
    if size == 0:
        raise _invalid(path, "the file is empty")
    if size < _LENGTH.size:
        raise _invalid(path, f"the file is {size} bytes, shorter than the 8-byte header length")
    (length,) = _LENGTH.unpack(_read_exact(path, f, _LENGTH.size))
    if length > MAX_HEADER_BYTES:
        raise _invalid(path, f"the header length {length} is over the {MAX_HEADER_BYTES}-byte limit")
    if length > size - _LENGTH.size:
        raise _invalid(path, f"the header length {length} is larger than the file ({size} bytes)")
    header = _parse_header(path, _read_exact(path, f, length))
    metadata = _check_metadata(path, header.pop(METADATA_KEY, {}))
    buffer_size = size - _LENGTH.size - length
    entries = [_check_entry(path, name, value, buffer_size) for name, value in header.items()]
    _check_coverage(path, entries, buffer_size)
    return entries, metadata, _LENGTH.size + length


def _read_exact(path: Path, f: BinaryIO, n: int) -> bytearray:
    """Exactly ``n`` bytes (a file that shrinks while it is read is refused, not zero-filled)."""
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        try:
            chunk = f.readinto(view[got:])
        except OSError as err:
            raise SafetensorsError(f"cannot read {path}: {err.strerror or err}") from err
        if not chunk:
            raise _invalid(path, f"the file ended {n - got} bytes early (was it changed while being read?)")
        got += chunk
    return buf


def _parse_header(path: Path, raw: bytearray) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _invalid(path, f"the header is not valid UTF-8 ({err.reason} at byte {err.start})") from err
    try:
        header = json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except _DuplicateKey as err:
        raise _invalid(path, f"the header names {err} twice") from err
    except (ValueError, RecursionError) as err:
        raise _invalid(path, f"the header is not valid JSON ({err})") from err
    if not isinstance(header, dict):
        raise _invalid(path, f"the header is a JSON {_kind(header)}, not an object")
    return header


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are unique: a repeated tensor name would otherwise silently win."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(repr(key))
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _kind(value: Any) -> str:
    """The JSON name of a parsed value's type, for messages."""
    kinds = {dict: "object", list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_metadata(path: Path, metadata: Any) -> dict[str, str]:
    if not isinstance(metadata, dict):
        raise _invalid(path, f"{METADATA_KEY} is a JSON {_kind(metadata)}, not an object of strings")
    for key, value in metadata.items():
        if not isinstance(value, str):
            raise _invalid(path, f"{METADATA_KEY} value of {key!r} is a JSON {_kind(value)}, not a string")
    return metadata


def _check_entry(path: Path, name: str, value: Any, buffer_size: int) -> _Entry:
    """One tensor's entry: the exact keys, a known dtype, a shape, and offsets that fit the buffer and the size."""
    if not isinstance(value, dict):
        raise _invalid(path, f"tensor {name!r}: the entry is a JSON {_kind(value)}, not an object")
    if set(value) != set(ENTRY_KEYS):
        missing, extra = sorted(set(ENTRY_KEYS) - set(value)), sorted(set(value) - set(ENTRY_KEYS))
        raise _invalid(path, f"tensor {name!r}: the entry must have exactly the keys {list(ENTRY_KEYS)} "
                             f"(missing {missing}, unexpected {extra})")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise _invalid(path, f"tensor {name!r}: unsupported dtype {dtype!r} (supported: {', '.join(DTYPES)})")
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise _invalid(path, f"tensor {name!r}: shape {shape!r} is not a list of non-negative integers")
    begin, end = _check_offsets(path, name, offsets, buffer_size)
    need = math.prod(shape) * DTYPES[dtype].itemsize
    if end - begin != need:
        raise _invalid(path, f"tensor {name!r}: data_offsets [{begin}, {end}] span {end - begin} bytes, but "
                             f"{dtype} of shape {shape} needs {need}")
    return _Entry(name, dtype, tuple(shape), begin, end)


def _check_offsets(path: Path, name: str, offsets: Any, buffer_size: int) -> tuple[int, int]:
    if not isinstance(offsets, list) or len(offsets) != 2 or not all(_is_int(o) for o in offsets):
        raise _invalid(path, f"tensor {name!r}: data_offsets {offsets!r} is not a list of two integers")
    begin, end = offsets
    if not 0 <= begin <= end:
        raise _invalid(path, f"tensor {name!r}: data_offsets [{begin}, {end}] do not satisfy 0 <= begin <= end")
    if end > buffer_size:
        raise _invalid(path, f"tensor {name!r}: data_offsets [{begin}, {end}] end beyond the "
                             f"{buffer_size}-byte data buffer")
    return begin, end


def _check_coverage(path: Path, entries: list[_Entry], buffer_size: int) -> None:
    """The tensors cover the data buffer exactly once: no overlap, no gap, no trailing bytes."""
    pos, previous = 0, ""
    for entry in sorted(entries, key=lambda e: (e.begin, e.end)):
        if entry.begin < pos:
            raise _invalid(path, f"tensors {previous!r} and {entry.name!r} overlap "
                                 f"(bytes {entry.begin} to {pos} of the data buffer)")
        if entry.begin > pos:
            raise _invalid(path, f"a gap: bytes {pos} to {entry.begin} of the data buffer, before tensor "
                                 f"{entry.name!r}, belong to no tensor")
        pos, previous = entry.end, entry.name
    if pos != buffer_size:
        raise _invalid(path, f"{buffer_size - pos} trailing bytes after the last tensor belong to no tensor")


def _read_tensor(path: Path, f: BinaryIO, data_start: int, entry: _Entry) -> torch.Tensor:
    """A tensor owning its bytes (a fresh bytearray, so it is writable and independent of the file)."""
    dtype = DTYPES[entry.dtype]
    if entry.end == entry.begin:
        return torch.empty(entry.shape, dtype=dtype)
    f.seek(data_start + entry.begin)
    buf = _read_exact(path, f, entry.end - entry.begin)
    if dtype is torch.bool and torch.frombuffer(buf, dtype=torch.uint8).gt(1).any():
        raise _invalid(path, f"tensor {entry.name!r}: BOOL data holds bytes other than 0 and 1")
    return torch.frombuffer(buf, dtype=dtype).reshape(entry.shape)


def _check_little_endian(path: Path) -> None:
    if sys.byteorder != "little":
        raise SafetensorsError(f"cannot read or write {path}: safetensors data is little-endian and this "
                               f"{sys.byteorder}-endian host is not supported")
