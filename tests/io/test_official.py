"""Released checkpoints: counts, cost lists, PSNR; wrong files get clear errors."""

import pytest
import torch

from conftest import sample_photo
from pcsr_lightning.config import backbone_names, model_config
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.inference.reference import upscale_reference
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.inference.session import upscale
from pcsr_lightning.io.checkpoint import CheckpointError, load_checkpoint
from pcsr_lightning.io.official import convert_release, import_official
from pcsr_lightning.measure.flops import paper_flops
from pcsr_lightning.measure.metrics import psnr

PARAMS = {"fsrcnn-x4": 24_515, "fsrcnn-pcsr-phase1": 24_502, "carn-x4": 294_915, "carn-pcsr-phase1": 168_970}
COSTS = {"fsrcnn-pcsr-phase1": (0.9100, 0.0900), "carn-pcsr-phase1": (0.6812, 0.3188)}  # heavy, light
ORIGINAL_FLOPS_32 = {"fsrcnn-x4": 468_017_152, "carn-x4": 1_156_448_256}


def test_parameter_counts(official_ckpts):
    for name, count in PARAMS.items():
        model = load_checkpoint(official_ckpts[name]).model
        assert sum(p.numel() for p in model.parameters()) == count, name


def test_cost_lists(official_ckpts):
    for name, costs in COSTS.items():
        model = load_checkpoint(official_ckpts[name]).model
        torch.testing.assert_close(cost_list(model, 4), torch.tensor(costs), atol=1e-3, rtol=0)


def test_original_paper_flops(official_ckpts):
    for name, flops in ORIGINAL_FLOPS_32.items():
        model = load_checkpoint(official_ckpts[name]).model
        assert paper_flops(model, torch.zeros(1, 3, 32, 32)) == flops


def test_released_networks_are_the_configured_ones(official_ckpts):
    """conf/backbone holds the paper's widths: the release's own files must build exactly those networks."""
    for name in official_ckpts:
        backbone, original = name.split("-")[0], name.endswith("-x4")
        expected = model_config(backbone, original, ["init.weights=release"])
        assert load_checkpoint(official_ckpts[name]).config == expected, name


def test_release_without_widths_gets_the_configured_original_widths():
    """Widths the release's args leave out are the release's defaults: the original network's in conf/backbone."""
    for name in backbone_names():
        config, _, _ = convert_release({"model": {"name": name, "args": {}, "sd": {}}})
        expected = model_config(name, original=True, overrides=["init.weights=release"])
        assert config == expected, name


@pytest.fixture(scope="module")
def photo_pair():
    hr = sample_photo("coffee")[:, :256, :320]
    return hr, imresize(hr, (64, 80))[None]


def test_psnr_above_bicubic_for_every_model(official_ckpts, photo_pair):
    hr, lr = photo_pair
    bicubic = psnr(imresize(lr[0], hr.shape[-2:]), hr, 4)
    for name, path in official_ckpts.items():
        loaded = load_checkpoint(path)
        with torch.no_grad():
            sr = upscale(loaded.model, lr, 4).sr if loaded.is_pcsr else loaded.model(lr)
        assert psnr(sr[0], hr, 4) > bicubic + 0.3, name


def test_released_pcsr_fast_path_matches_reference(official_ckpts, photo_pair):
    _, lr = photo_pair
    for name in COSTS:
        model = load_checkpoint(official_ckpts[name]).model
        for k in (0.0, 1.0):
            fast, ref = upscale(model, lr, 4, k=k), upscale_reference(model, lr, 4, k=k)
            assert torch.equal(fast.classes, ref.classes)
            torch.testing.assert_close(fast.sr, ref.sr, atol=1e-5, rtol=0)


def test_heavy_share_decreases_with_k_on_released_model(official_ckpts, photo_pair):
    _, lr = photo_pair
    model = load_checkpoint(official_ckpts["carn-pcsr-phase1"]).model
    shares = [upscale(model, lr, 4, k=k).heavy_share() for k in (-1, 0, 1, 2)]
    assert shares == sorted(shares, reverse=True) and shares[0] > shares[-1]


def test_wrong_files_get_clear_errors(tmp_path, official_ckpts):
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint .*: its content is text$"):
        import_official(junk, tmp_path / "x.ckpt")
    other = tmp_path / "other.pth"
    torch.save({"state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="not a PCSR release checkpoint"):
        import_official(other, tmp_path / "x.ckpt")
    torch.save({"model": {"name": "edsr", "args": {}, "sd": {}}}, other)
    with pytest.raises(CheckpointError, match="unknown release model 'edsr'"):
        import_official(other, tmp_path / "x.ckpt")
    from conftest import OFFICIAL

    release = torch.load(OFFICIAL / "carn-pcsr-phase1.pth", map_location="cpu", weights_only=False)
    release["model"]["args"]["heavy_sampler_spec"]["args"]["imnet_spec"]["args"]["hidden_list"] = [64, 64]
    torch.save(release, other)
    with pytest.raises(CheckpointError, match="do not fit the model.*upsamplers.0"):
        import_official(other, tmp_path / "x.ckpt")
    assert not (tmp_path / "x.ckpt").exists()
    with pytest.raises(CheckpointError, match="import-official"):
        load_checkpoint(OFFICIAL / "carn-x4.pth")


def test_srresnet_and_phase0_release_layouts_import(tmp_path):
    """The release ships no SRResNet or phase-0 files here: build ones in its layout and import them."""
    from pcsr_lightning.models import FSRCNN, PCSR, SRResNet

    net = SRResNet(nf=64, nb=16, scale=4)
    raw = {"model": {"name": "srresnet", "args": {"nf": 64, "nb": 16, "upscale": 4, "no_upsampling": False},
                     "sd": net.state_dict()}, "iter": 5}
    torch.save(raw, tmp_path / "srresnet.pth")
    loaded = load_checkpoint(import_official(tmp_path / "srresnet.pth", tmp_path / "srresnet.ckpt"))
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(lr), net(lr))
    assert paper_flops(loaded.model, torch.zeros(1, 3, 32, 32)) == 5_193_990_144

    phase0 = PCSR(FSRCNN(d=48), [[58] * 4], [])
    sd = {("encoder." + k[len("backbone."):] if k.startswith("backbone.") else
           k.replace("upsamplers.0.", "heavy_sampler.imnet.")): v for k, v in phase0.state_dict().items()}
    mlp = {"name": "liif-sampler", "args": {"imnet_spec": {"name": "mlp", "args": {"hidden_list": [58] * 4}}}}
    raw = {"model": {"name": "pcsr-phase0", "args": {"encoder_spec": {"name": "fsrcnn", "args": {"d": 48}},
                                                     "heavy_sampler_spec": mlp}, "sd": sd}}
    torch.save(raw, tmp_path / "phase0.pth")
    loaded = load_checkpoint(import_official(tmp_path / "phase0.pth", tmp_path / "phase0.ckpt"))
    assert loaded.is_pcsr and loaded.model.num_classes == 1
    out = upscale(loaded.model, lr, 4)
    assert out.heavy_share() == 1.0
    torch.testing.assert_close(out.sr, upscale(phase0.eval(), lr, 4).sr)
