"""pcsr upscale and model(pil_image) keep what an image carries, and name their outputs as users expect."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageCms

import pcsr_lightning
from bad_input_kit import run_cli
from factories import save_tiny
from pcsr_lightning.io.picture import LUMA
from pcsr_lightning.io.png16 import encode_png, read_png

SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
H, W = 6, 8


def ramp(c: int, peak: int = 255, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    arr = np.cumsum(rng.integers(0, peak // 6, (H, W, c)), axis=1) % (peak + 1)
    return arr.astype(np.uint16 if peak > 255 else np.uint8)


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    return save_tiny(tmp_path_factory.mktemp("m") / "tiny.safetensors")


@pytest.fixture(scope="module")
def model(model_file):
    return pcsr_lightning.load(model_file, device="cpu")


def sr_float(model, rgb: torch.Tensor) -> torch.Tensor:
    """The network's (3,H,W) result on an RGB float image, as the upscaler runs it."""
    return model.super_resolve(rgb[None])[0][0].float().clamp(0, 1)


def upscale(model_file, src, out, capsys, *extra) -> str:
    code, err = run_cli(["upscale", "--ckpt", model_file, "--input", src, "--output", out, *extra], capsys)
    assert code == 0, err
    return err


def test_rgba_keeps_its_alpha_by_bicubic_or_through_the_model(model_file, model, tmp_path, capsys):
    arr = ramp(4)
    Image.fromarray(arr, "RGBA").save(tmp_path / "a.png")
    upscale(model_file, tmp_path / "a.png", tmp_path / "out.png", capsys)
    out = Image.open(tmp_path / "out.png")
    assert out.mode == "RGBA" and out.size == (4 * W, 4 * H)
    colour = torch.from_numpy(arr[..., :3].copy()).permute(2, 0, 1).float() / 255
    expected_rgb = sr_float(model, colour).mul(255).round().byte().permute(1, 2, 0).numpy()
    np.testing.assert_array_equal(np.asarray(out)[..., :3], expected_rgb)  # the colour as without alpha
    alpha = torch.from_numpy(arr[..., 3].copy()).float()[None, None] / 255
    bicubic = F.interpolate(alpha, size=(4 * H, 4 * W), mode="bicubic", align_corners=False).clamp(0, 1)
    np.testing.assert_array_equal(np.asarray(out)[..., 3], bicubic[0, 0].mul(255).round().byte().numpy())
    upscale(model_file, tmp_path / "a.png", tmp_path / "m.png", capsys, "--alpha", "model")
    through = sr_float(model, alpha[0].expand(3, -1, -1)).mean(0).clamp(0, 1)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "m.png"))[..., 3],
                                  through.mul(255).round().byte().numpy())
    # the Python API keeps it too (bicubic)
    api = model(Image.fromarray(arr, "RGBA"))
    assert api.mode == "RGBA" and np.array_equal(np.asarray(api), np.asarray(out))


def test_grey_and_grey_alpha_stay_grey(model_file, model, tmp_path, capsys):
    grey = ramp(1)[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "g.png")
    Image.fromarray(np.dstack([grey, 255 - grey]), "LA").save(tmp_path / "ga.png")
    upscale(model_file, tmp_path / "g.png", tmp_path / "g_out.png", capsys)
    upscale(model_file, tmp_path / "ga.png", tmp_path / "ga_out.png", capsys)
    sr = sr_float(model, torch.from_numpy(grey.copy()).float().div(255).expand(3, -1, -1))
    luma = (LUMA[0] * sr[0] + LUMA[1] * sr[1] + LUMA[2] * sr[2]).clamp(0, 1).mul(255).round().byte().numpy()
    out = Image.open(tmp_path / "g_out.png")
    assert out.mode == "L" and np.array_equal(np.asarray(out), luma)
    both = Image.open(tmp_path / "ga_out.png")
    assert both.mode == "LA" and np.array_equal(np.asarray(both)[..., 0], luma)
    assert model(Image.fromarray(grey, "L")).mode == "L"


def test_palette_with_transparency_comes_out_rgba_and_without_rgb(model_file, tmp_path, capsys):
    pal = Image.fromarray(ramp(3)).convert("P")
    pal.save(tmp_path / "p.png", transparency=0)
    pal.save(tmp_path / "q.png")
    upscale(model_file, tmp_path / "p.png", tmp_path / "p_out.png", capsys)
    upscale(model_file, tmp_path / "q.png", tmp_path / "q_out.png", capsys)
    assert Image.open(tmp_path / "p_out.png").mode == "RGBA" and Image.open(tmp_path / "q_out.png").mode == "RGB"


def test_16_bit_in_gives_16_bit_out(model_file, model, tmp_path, capsys):
    grey, rgba = ramp(1, 65535)[..., 0], ramp(4, 65535, seed=1)
    Image.fromarray(grey).save(tmp_path / "g16.png")
    (tmp_path / "c16.png").write_bytes(encode_png(rgba))
    upscale(model_file, tmp_path / "g16.png", tmp_path / "g16_out.png", capsys)
    err = upscale(model_file, tmp_path / "c16.png", tmp_path / "c16_out.png", capsys)
    assert "warning" not in err
    out = Image.open(tmp_path / "g16_out.png")
    assert out.mode == "I;16"
    sr = sr_float(model, torch.from_numpy(grey.astype(np.float32) / 65535).expand(3, -1, -1))
    luma = (LUMA[0] * sr[0] + LUMA[1] * sr[1] + LUMA[2] * sr[2]).clamp(0, 1) * 65535
    assert np.abs(np.asarray(out).astype(np.float64) - luma.numpy()).max() <= 0.5 + 1e-2
    pixels = read_png(tmp_path / "c16_out.png").pixels
    assert pixels.dtype == np.uint16 and pixels.shape == (4 * H, 4 * W, 4)
    colour = torch.from_numpy(rgba[..., :3].astype(np.float32) / 65535).permute(2, 0, 1)
    expected = sr_float(model, colour).permute(1, 2, 0).numpy() * 65535
    assert np.abs(pixels[..., :3] - expected).max() <= 0.5 + 1e-2
    assert len(np.unique(pixels[..., :3] & 0xFF)) > 1  # not 8 bits scaled up
    # Pillow reads the file (at 8 bits: its high bytes)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "c16_out.png")), (pixels >> 8).astype(np.uint8))
    assert model(Image.fromarray(grey)).mode == "I;16"
    # a 16-bit grey TIFF stays one with --ext auto
    folder = tmp_path / "tif"
    folder.mkdir()
    Image.fromarray(grey).save(folder / "g16.tif")
    upscale(model_file, folder, tmp_path / "tif_out", capsys, "--ext", "auto")
    with Image.open(tmp_path / "tif_out" / "g16.tif") as tif:
        assert tif.format == "TIFF" and tif.mode == "I;16" and np.array_equal(np.asarray(tif), np.asarray(out))
    # a format without 16 bits writes 8, and says so
    code, err = run_cli(["upscale", "--ckpt", model_file, "--input", tmp_path / "c16.png", "--output",
                         tmp_path / "c16.webp"], capsys)
    assert code == 0 and "holds 8 bits per channel" in err and Image.open(tmp_path / "c16.webp").mode == "RGBA"


def test_icc_profile_and_exif_are_carried_and_orientation_applied_once(model_file, model, tmp_path, capsys):
    img = Image.fromarray(ramp(3))
    exif = img.getexif()
    exif[0x0112], exif[0x010F] = 6, "pcsr test"  # rotate 90 degrees clockwise to view
    img.save(tmp_path / "p.jpg", icc_profile=SRGB, exif=exif.tobytes(), quality=95)
    img.save(tmp_path / "p.png", icc_profile=SRGB)
    upscale(model_file, tmp_path / "p.jpg", tmp_path / "j.png", capsys)
    upscale(model_file, tmp_path / "p.png", tmp_path / "p_out.jpg", capsys)
    out = Image.open(tmp_path / "j.png")
    assert out.info["icc_profile"] == SRGB
    assert out.size == (4 * H, 4 * W)  # upright: the EXIF orientation applied
    assert out.getexif()[0x0112] == 1 and out.getexif()[0x010F] == "pcsr test"
    assert Image.open(tmp_path / "p_out.jpg").info["icc_profile"] == SRGB
    api = model(Image.open(tmp_path / "p.png"))
    assert api.info["icc_profile"] == SRGB


def test_output_file_suffix_and_ext(model_file, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(ramp(3)).save(photos / "cat.png")
    Image.fromarray(ramp(3, seed=2)).save(photos / "dog.jpg")
    upscale(model_file, photos / "cat.png", tmp_path / "one.png", capsys)
    assert (tmp_path / "one.png").is_file()  # a file, not a folder
    upscale(model_file, photos / "cat.png", tmp_path / "one.webp", capsys, "--class-map")
    assert Image.open(tmp_path / "one.webp").format == "WEBP" and (tmp_path / "one_classes.png").is_file()
    upscale(model_file, photos, tmp_path / "sr", capsys, "--suffix", "_x4", "--ext", "auto", "--class-map")
    assert sorted(p.name for p in (tmp_path / "sr").iterdir()) == ["cat_x4.png", "cat_x4_classes.png",
                                                                   "dog_x4.jpg", "dog_x4_classes.png"]
    assert Image.open(tmp_path / "sr" / "dog_x4.jpg").format == "JPEG"
    upscale(model_file, photos, tmp_path / "sr2", capsys, "--ext", "webp")
    assert sorted(p.name for p in (tmp_path / "sr2").iterdir()) == ["cat.webp", "dog.webp"]
    upscale(model_file, photos, tmp_path / "sr3", capsys)  # the default: the input's name, PNG
    assert sorted(p.name for p in (tmp_path / "sr3").iterdir()) == ["cat.png", "dog.png"]


def test_naming_refusals_come_before_any_work(model_file, tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    Image.fromarray(ramp(3)).save(photos / "cat.png")
    Image.fromarray(ramp(4), "RGBA").save(photos / "clear.png")
    cases = [
        (["--input", photos, "--output", tmp_path / "x.png"], "names one image file, but --input"),
        (["--input", photos / "cat.png", "--output", tmp_path / "x.png", "--suffix", "_x4"],
         "--suffix names the results in an output folder"),
        (["--input", photos / "cat.png", "--output", tmp_path / "x.png", "--ext", "jpg"],
         "--ext names the results in an output folder"),
        (["--input", photos, "--output", tmp_path / "sr", "--ext", "jpg"], "clear.png has transparency, which .jpg"),
        (["--input", photos / "clear.png", "--output", tmp_path / "x.jpg"], "has transparency"),
        (["--input", photos, "--output", tmp_path / "sr", "--suffix", "a/b"], "folder separator"),
    ]
    for args, message in cases:
        code, err = run_cli(["upscale", "--ckpt", model_file, *args], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]  # nothing written
