"""What an image carries (alpha, grey, 16 bits, ICC, EXIF) read, kept and written back; the 16-bit PNG codec."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms, ImageOps

from pcsr_lightning.io.picture import (
    from_pil,
    icc_fits,
    open_picture,
    result_pixels,
    save_picture,
    upright_array,
    upscale_alpha,
)
from pcsr_lightning.io.png16 import SIGNATURE, PngError, decode_png, encode_png, png_chunk, read_png

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def ramp(h: int, w: int, c: int, peak: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.integers(0, peak // 8, (h, w, c)), axis=1) % (peak + 1)
    return arr.astype(np.uint16 if peak > 255 else np.uint8)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_the_decoder_undoes_every_row_filter_pillow_writes(mode):
    """Pillow's optimised 8-bit PNGs use all five filters, row by row."""
    arr = ramp(23, 31, len(mode), 255)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if mode == "L" else arr, mode).save(buf, "PNG", optimize=True)
    np.testing.assert_array_equal(decode_png(buf.getvalue()).pixels, arr)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_16_bit_png_round_trip_and_what_pillow_reads_of_it(channels):
    arr = ramp(9, 14, channels, 65535)
    blob = encode_png(arr, icc=SRGB, exif=b"Exif\0\0MM\0*\0\0\0\x08\0\0")
    back = decode_png(blob)
    np.testing.assert_array_equal(back.pixels, arr)
    assert back.icc == SRGB
    with Image.open(io.BytesIO(blob)) as img:
        assert img.info["icc_profile"] == SRGB
        if channels == 1:  # Pillow keeps 16-bit grey exactly
            assert img.mode == "I;16"
            np.testing.assert_array_equal(np.asarray(img), arr[..., 0])
        else:  # and decodes the others to their high bytes (grey + alpha as RGBA)
            pixels = np.asarray(img.convert("LA") if channels == 2 else img).reshape(9, 14, channels)
            np.testing.assert_array_equal(pixels, (arr >> 8).astype(np.uint8))


def test_the_decoder_refuses_what_it_does_not_read():
    with pytest.raises(PngError, match="not a PNG"):
        decode_png(b"GIF89a")
    header = struct.pack(">IIBBBBB", 8, 8, 16, 2, 0, 0, 1)  # Adam7
    with pytest.raises(PngError, match="interlace 1"):
        decode_png(SIGNATURE + png_chunk(b"IHDR", header) + png_chunk(b"IEND", b""))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_upright_array_turns_as_pillow_does(orientation):
    arr = ramp(5, 7, 3, 255)
    img = Image.fromarray(arr)
    exif = img.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif.tobytes())
    expected = np.asarray(ImageOps.exif_transpose(Image.open(buf)))
    np.testing.assert_array_equal(upright_array(arr, orientation), expected)


def test_modes_become_rgb_colour_and_what_is_kept():
    rgba = Image.fromarray(ramp(6, 8, 4, 255), "RGBA")
    pic = from_pil(rgba)
    assert pic.colour.shape == (3, 6, 8) and pic.alpha.shape == (1, 6, 8) and not pic.grey and pic.channels == 4
    np.testing.assert_array_equal(pic.colour.permute(1, 2, 0).numpy(), np.asarray(rgba)[..., :3])
    grey = from_pil(Image.fromarray(ramp(6, 8, 1, 255)[..., 0], "L"))
    assert grey.grey and grey.channels == 1 and torch.equal(grey.colour[0], grey.colour[2])
    sixteen = from_pil(Image.fromarray(ramp(6, 8, 1, 65535)[..., 0]))
    assert sixteen.depth == 16 and sixteen.grey and sixteen.colour.dtype == torch.float32
    palette = Image.fromarray(ramp(6, 8, 3, 255)).convert("P")
    palette.info["transparency"] = 0
    assert from_pil(palette).alpha is not None and from_pil(palette).channels == 4
    assert from_pil(Image.fromarray(ramp(6, 8, 3, 255)).convert("P")).channels == 3
    cmyk = Image.fromarray(ramp(6, 8, 3, 255)).convert("CMYK")
    cmyk.info["icc_profile"] = b"x" * 16 + b"CMYK" + b"x" * 100
    assert from_pil(cmyk).channels == 3 and from_pil(cmyk).icc is None  # the profile no longer fits


def test_grey_is_written_back_as_the_luma_at_the_file_depth():
    pic = from_pil(Image.fromarray(ramp(4, 4, 1, 65535)[..., 0]))
    sr = torch.rand(3, 8, 8)
    out = result_pixels(pic, sr, None)
    assert out.dtype == np.uint16 and out.shape == (8, 8, 1)
    luma = 0.299 * sr[0] + 0.587 * sr[1] + 0.114 * sr[2]
    np.testing.assert_array_equal(out[..., 0], luma.mul(65535).round().numpy().astype(np.uint16))


def test_alpha_by_bicubic_is_torch_bicubic_and_by_model_the_network_mean():
    alpha = torch.rand(1, 1, 5, 6)
    expected = F.interpolate(alpha, size=(20, 24), mode="bicubic", align_corners=False).clamp(0, 1)
    assert torch.equal(upscale_alpha(alpha, (20, 24)), expected)

    def network(x):
        assert x.shape == (1, 3, 5, 6) and torch.equal(x[:, 0], x[:, 2])
        return torch.cat([x, 2 * x, 0 * x], 1).repeat_interleave(4, 2).repeat_interleave(4, 3)

    out = upscale_alpha(alpha, (20, 24), "model", network)
    big = alpha.repeat_interleave(4, 2).repeat_interleave(4, 3)
    assert torch.allclose(out, (big + (2 * big).clamp(0, 1)) / 3)  # each channel clamped, then the mean
    with pytest.raises(ValueError, match="alpha must be one of"):
        upscale_alpha(alpha, (20, 24), "nearest")


def test_icc_profile_kept_only_where_its_colour_space_fits():
    assert icc_fits(SRGB, 3) == SRGB and icc_fits(SRGB, 4) == SRGB
    assert icc_fits(SRGB, 1) is None and icc_fits(None, 3) is None


@pytest.mark.parametrize("name", ["r.png", "r.jpg", "r.webp", "r.tif"])
def test_save_picture_writes_the_profile_and_exif(tmp_path, name):
    pixels = ramp(8, 8, 3, 255)
    exif = Image.Exif()
    exif[0x010F] = "pcsr test"
    save_picture(pixels, tmp_path / name, SRGB, exif.tobytes())
    with Image.open(tmp_path / name) as img:
        assert img.info["icc_profile"] == SRGB and img.getexif()[0x010F] == "pcsr test"
        if name.endswith((".png", ".tif")):
            np.testing.assert_array_equal(np.asarray(img), pixels)


def test_save_picture_refuses_alpha_in_jpeg_and_16_bit_colour_in_tiff(tmp_path):
    with pytest.raises(ValueError, match="JPEG cannot hold transparency"):
        save_picture(ramp(4, 4, 4, 255), tmp_path / "r.jpg")
    with pytest.raises(ValueError, match="cannot hold 3-channel 16-bit"):
        save_picture(ramp(4, 4, 3, 65535), tmp_path / "r.tif")
    assert not list(tmp_path.iterdir())
    save_picture(ramp(4, 4, 3, 65535), tmp_path / "r.png")
    np.testing.assert_array_equal(read_png(tmp_path / "r.png").pixels, ramp(4, 4, 3, 65535))


def test_open_picture_keeps_16_bit_colour_and_turns_it_upright(tmp_path):
    arr = ramp(5, 7, 4, 65535)
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "pcsr test"
    (tmp_path / "a.png").write_bytes(encode_png(arr, icc=SRGB, exif=exif.tobytes()))
    pic = open_picture(tmp_path / "a.png")
    assert pic.depth == 16 and pic.channels == 4 and pic.icc == SRGB
    expected = np.rot90(arr, -1).astype(np.float32) / 65535
    np.testing.assert_array_equal(pic.colour.permute(1, 2, 0).numpy(), expected[..., :3])
    np.testing.assert_array_equal(pic.alpha[0].numpy(), expected[..., 3])
    kept = Image.Exif()
    kept.load(pic.exif)
    assert kept[0x0112] == 1 and kept[0x010F] == "pcsr test"


def test_an_exif_block_pillow_cannot_parse_is_dropped_not_fatal(tmp_path):
    Image.fromarray(ramp(4, 5, 3, 255)).save(tmp_path / "e.jpg", exif=b"Exif\0\0garbage, not TIFF")
    pic = open_picture(tmp_path / "e.jpg")
    assert pic.exif is None and pic.colour.shape == (3, 4, 5)
