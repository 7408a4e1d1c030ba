"""The project's safetensors reader and writer: round trips, the exact byte layout, agreement with the
``safetensors`` package when it is installed, every refusal of a damaged file, and atomic writes."""

from __future__ import annotations

import json
import struct
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch

from pcsr_lightning.io import safetensors_format as sf
from pcsr_lightning.io.files import OutputError
from pcsr_lightning.io.safetensors_format import (
    SafetensorsError,
    read_safetensors,
    read_safetensors_header,
    write_safetensors,
)


def _every_dtype() -> dict[str, torch.Tensor]:
    base = torch.randn(3, 4) * 100
    tensors = {f"{code.lower()}.w": base.to(dtype) for code, dtype in sf.DTYPES.items()}
    tensors["bool.w"] = base > 0
    tensors["f32.special"] = torch.tensor([float("nan"), float("inf"), -float("inf"), -0.0, 1e-45])
    tensors["i64.extremes"] = torch.tensor([-(2**63), 2**63 - 1])
    tensors["scalar"] = torch.tensor(2.5, dtype=torch.bfloat16)
    tensors["scalar.bool"] = torch.tensor(True)
    tensors["empty"] = torch.zeros(0, 3, dtype=torch.int16)
    tensors["empty.bool"] = torch.zeros(2, 0, dtype=torch.bool)
    tensors["transposed"] = base.t()  # not contiguous
    tensors["row"] = base[1]  # shares memory with base
    return tensors


def _assert_same(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert sorted(got) == sorted(want)
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and got[name].shape == tensor.shape, name
        torch.testing.assert_close(got[name], tensor, rtol=0, atol=0, equal_nan=True, msg=name)


def _craft(path: Path, header: Any, data: bytes = b"", length: int | None = None) -> Path:
    """A file with a hand-made header (an object, or raw bytes) and data buffer."""
    raw = header if isinstance(header, bytes) else json.dumps(header).encode("utf-8")
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def _entry(dtype: str, shape: list, begin: int, end: int) -> dict:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def test_round_trip_every_dtype(tmp_path):
    tensors = _every_dtype()
    metadata = {"format": "pt", "note": "ünïcode ✓", "empty": ""}
    path = write_safetensors(tmp_path / "all.safetensors", tensors, metadata)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch.frombuffer's non-writable buffer warning
        got, got_meta = read_safetensors(path)
    _assert_same(got, tensors)
    assert got_meta == metadata
    assert got["transposed"].is_contiguous()
    got["row"].add_(1)  # independent, writable tensors: changing one leaves the others alone
    torch.testing.assert_close(got["f32.w"][1], tensors["f32.w"][1])
    entries, header_meta = read_safetensors_header(path)
    assert entries == {n: (sf.CODES[t.dtype], tuple(t.shape)) for n, t in tensors.items()}
    assert header_meta == metadata


def test_no_tensors_and_no_metadata(tmp_path):
    path = write_safetensors(tmp_path / "none.safetensors", {})
    assert read_safetensors(path) == ({}, {})
    assert path.read_bytes() == struct.pack("<Q", 8) + b"{}      "


def test_byte_layout_by_hand(tmp_path):
    """Names sorted, data packed with no gaps, header padded with spaces to a multiple of 8 bytes."""
    path = write_safetensors(tmp_path / "tiny.safetensors", {"b": torch.tensor([1, -2], dtype=torch.int16),
                                                             "a": torch.tensor([1.5])}, {"k": "v"})
    raw = path.read_bytes()
    (length,) = struct.unpack("<Q", raw[:8])
    header = ('{"__metadata__":{"k":"v"},"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},'
              '"b":{"dtype":"I16","shape":[2],"data_offsets":[4,8]}}')
    assert length % 8 == 0 and length == len(header) + (-len(header) % 8)
    assert raw[8:8 + length] == header.encode() + b" " * (length - len(header))
    assert raw[8 + length:] == struct.pack("<f", 1.5) + struct.pack("<hh", 1, -2)


def test_agrees_with_the_safetensors_package(tmp_path):
    st = pytest.importorskip("safetensors.torch")
    safe_open = pytest.importorskip("safetensors").safe_open
    tensors = {n: t.contiguous() for n, t in _every_dtype().items() if n != "row"}
    metadata = {"format": "pt", "by": "pcsr"}
    ours = write_safetensors(tmp_path / "ours.safetensors", tensors, metadata)
    _assert_same(st.load_file(ours), tensors)
    with safe_open(str(ours), framework="pt") as f:
        assert f.metadata() == metadata
    theirs = tmp_path / "theirs.safetensors"
    st.save_file(tensors, theirs, metadata)
    got, got_meta = read_safetensors(theirs)
    _assert_same(got, tensors)
    assert got_meta == metadata


F32x2 = struct.pack("<ff", 1.0, 2.0)
REFUSED_HEADERS = {  # name: (header, data, words the message must hold)
    "not utf-8": (b'{"a": "\xff"}', b"", ["UTF-8"]),
    "not json": (b'{"a": ', b"", ["not valid JSON"]),
    "NaN constant": (b'{"a": NaN}', b"", ["not valid JSON"]),
    "array": ([1, 2], b"", ["JSON array, not an object"]),
    "duplicate name": (b'{"w": 1, "w": 2}', b"", ["'w' twice"]),
    "entry not object": ({"w": [1]}, b"", ["'w'", "not an object"]),
    "missing key": ({"w": {"dtype": "F32", "shape": [2]}}, F32x2, ["'w'", "missing ['data_offsets']"]),
    "extra key": ({"w": {**_entry("F32", [2], 0, 8), "x": 1}}, F32x2, ["'w'", "unexpected ['x']"]),
    "unknown dtype": ({"w": _entry("C64", [1], 0, 8)}, F32x2, ["'w'", "unsupported dtype 'C64'"]),
    "dtype not str": ({"w": _entry(4, [2], 0, 8)}, F32x2, ["'w'", "unsupported dtype 4"]),
    "negative dim": ({"w": _entry("F32", [-2], 0, 8)}, F32x2, ["'w'", "shape [-2]"]),
    "float dim": ({"w": _entry("F32", [2.0], 0, 8)}, F32x2, ["'w'", "shape [2.0]"]),
    "bool dim": ({"w": _entry("F32", [True, 2], 0, 8)}, F32x2, ["'w'", "shape [True, 2]"]),
    "shape not list": ({"w": _entry("F32", 2, 0, 8)}, F32x2, ["'w'", "shape 2"]),
    "three offsets": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4, 8]}}, F32x2,
                      ["'w'", "not a list of two integers"]),
    "string offsets": ({"w": {"dtype": "F32", "shape": [2], "data_offsets": ["0", "8"]}}, F32x2,
                       ["'w'", "not a list of two integers"]),
    "begin after end": ({"w": _entry("F32", [2], 8, 0)}, F32x2, ["'w'", "begin <= end"]),
    "negative begin": ({"w": _entry("F32", [2], -8, 0)}, F32x2, ["'w'", "begin <= end"]),
    "beyond buffer": ({"w": _entry("F32", [2], 4, 12)}, F32x2, ["'w'", "beyond the 8-byte data buffer"]),
    "size mismatch": ({"w": _entry("F32", [3], 0, 8)}, F32x2, ["'w'", "span 8 bytes", "needs 12"]),
    "overlap": ({"a": _entry("F32", [2], 0, 8), "b": _entry("F32", [1], 4, 8)}, F32x2,
                ["tensors 'a' and 'b' overlap"]),
    "gap": ({"a": _entry("F32", [1], 0, 4), "b": _entry("U8", [2], 6, 8)}, F32x2, ["gap", "before tensor 'b'"]),
    "gap at start": ({"a": _entry("F32", [1], 4, 8)}, F32x2, ["gap", "bytes 0 to 4"]),
    "trailing bytes": ({"a": _entry("F32", [1], 0, 4)}, F32x2, ["4 trailing bytes"]),
    "metadata not object": ({"__metadata__": ["x"]}, b"", ["__metadata__ is a JSON array"]),
    "metadata value not str": ({"__metadata__": {"k": 1}}, b"", ["__metadata__ value of 'k'", "not a string"]),
}


@pytest.mark.parametrize("reader", [read_safetensors, read_safetensors_header])
@pytest.mark.parametrize("case", sorted(REFUSED_HEADERS))
def test_refuses_a_bad_header(tmp_path, case, reader):
    header, data, words = REFUSED_HEADERS[case]
    path = _craft(tmp_path / "bad.safetensors", header, data)
    with pytest.raises(SafetensorsError) as err:
        reader(path)
    message = str(err.value)
    assert str(path) in message and "not a valid safetensors file" in message
    for word in words:
        assert word in message, (case, message)


@pytest.mark.parametrize("reader", [read_safetensors, read_safetensors_header])
def test_refuses_a_file_that_is_not_one(tmp_path, reader):
    cases = {
        "missing": (None, "no such file"),
        "empty": (b"", "the file is empty"),
        "short": (b"\x05\x00\x00", "3 bytes, shorter than the 8-byte header length"),
        "length past the end": (struct.pack("<Q", 100) + b"{}", "header length 100 is larger than the file"),
        "huge length": (struct.pack("<Q", sf.MAX_HEADER_BYTES + 1) + b"{}", "over the 100000000-byte limit"),
        "max length": (b"\xff" * 8, "over the 100000000-byte limit"),
        "folder": ("dir", "a folder"),
    }
    for case, (content, words) in cases.items():
        path = tmp_path / case
        if content == "dir":
            path.mkdir()
        elif content is not None:
            path.write_bytes(content)
        with pytest.raises(SafetensorsError) as err:
            reader(path)
        assert str(path) in str(err.value) and words in str(err.value), (case, str(err.value))


def test_bool_data_is_checked_by_the_full_reader_only(tmp_path):
    path = _craft(tmp_path / "bool.safetensors", {"flags": _entry("BOOL", [3], 0, 3)}, b"\x00\x01\x02")
    assert read_safetensors_header(path) == ({"flags": ("BOOL", (3,))}, {})  # the header alone is valid
    with pytest.raises(SafetensorsError, match="'flags': BOOL data holds bytes other than 0 and 1"):
        read_safetensors(path)


def test_reads_files_from_other_writers(tmp_path):
    """Any entry order, unpadded header, zero-size tensors sharing an offset: all valid."""
    header = {"z": _entry("F32", [2], 0, 8), "e": _entry("I8", [0], 8, 8), "a": _entry("I8", [2], 8, 10),
              "f": _entry("I8", [0, 5], 8, 8), "__metadata__": {}}
    path = _craft(tmp_path / "other.safetensors", header, F32x2 + b"\x07\xf9")
    got, meta = read_safetensors(path)
    _assert_same(got, {"z": torch.tensor([1.0, 2.0]), "e": torch.zeros(0, dtype=torch.int8),
                       "a": torch.tensor([7, -7], dtype=torch.int8), "f": torch.zeros(0, 5, dtype=torch.int8)})
    assert meta == {} and list(got) == ["a", "e", "f", "z"]


@pytest.mark.parametrize("tensors, metadata, words", [
    ({1: torch.zeros(1)}, None, "tensor name 1 is not a string"),
    ({"__metadata__": torch.zeros(1)}, None, "'__metadata__' is reserved"),
    ({"w": [1.0]}, None, "'w' is a list, not a tensor"),
    ({"w": torch.zeros(1, dtype=torch.complex64)}, None, "'w' has unsupported dtype torch.complex64"),
    ({"w": torch.zeros(1, dtype=torch.uint16)}, None, "'w' has unsupported dtype torch.uint16"),
    ({"w": torch.zeros(2).to_sparse()}, None, "'w' holds no dense data"),
    ({"w": torch.zeros(1)}, {"k": 1}, "metadata 'k': 1 is not a string to a string"),
    ({"w": torch.zeros(1)}, {2: "v"}, "metadata 2: 'v' is not a string to a string"),
    ({"\ud800": torch.zeros(1)}, None, "not valid Unicode"),
])
def test_writer_refuses(tmp_path, tensors, metadata, words):
    path = tmp_path / "out.safetensors"
    with pytest.raises(SafetensorsError) as err:
        write_safetensors(path, tensors, metadata)
    assert str(path) in str(err.value) and words in str(err.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("exists", [False, True])
@pytest.mark.parametrize("error, raised", [(OSError(28, "No space left on device"), OutputError),
                                           (KeyboardInterrupt(), KeyboardInterrupt)])
def test_interrupted_write_leaves_no_trace(tmp_path, monkeypatch, exists, error, raised):
    target = tmp_path / "model.safetensors"
    if exists:
        write_safetensors(target, {"old": torch.ones(2)})
    before = target.read_bytes() if exists else None
    calls = []

    def fail(f, tensor):
        calls.append(tensor)
        if len(calls) == 2:  # after the header and the first tensor reached the temporary file
            raise error
        real_write(f, tensor)

    real_write = sf._write_tensor
    monkeypatch.setattr(sf, "_write_tensor", fail)
    with pytest.raises(raised):
        write_safetensors(target, {"a": torch.zeros(4), "b": torch.zeros(4)})
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == ([target] if exists else [])
    if exists:
        assert target.read_bytes() == before


def test_write_is_flushed_to_disk_and_replaces(tmp_path, monkeypatch):
    synced = []
    real_fsync = sf.os.fsync
    monkeypatch.setattr(sf.os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    target = tmp_path / "sub" / "m.safetensors"
    write_safetensors(target, {"w": torch.ones(2)})
    assert synced
    write_safetensors(target, {"w": torch.full((3,), 2.0)}, {"v": "2"})
    got, meta = read_safetensors(target)
    _assert_same(got, {"w": torch.full((3,), 2.0)})
    assert meta == {"v": "2"} and list(target.parent.iterdir()) == [target]
