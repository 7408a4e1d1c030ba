"""The model users hold: ``pcsr_lightning.load(source)`` returns an ``SRModel`` that super-resolves an image
in one call, whichever kind of network the file holds (PCSR, or the original network it accelerates).

It applies the rules the commands apply, so Python and the CLI give the same pixels at the same speed:
the memory layout of ``layout.choose_memory_format``, the scale checked against what the network can do,
outputs clamped to the image range and rounded like the PNGs the commands write. It describes itself
(kind, scale, classes, dtypes, cost list). Errors name the argument at fault.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from pcsr_lightning.inference.layout import as_input, choose_memory_format, in_memory_format
from pcsr_lightning.inference.pretrained import save_pretrained
from pcsr_lightning.inference.routed import RoutedSR
from pcsr_lightning.inference.router import cost_list, heavy_share, skipped_share
from pcsr_lightning.inference.session import InferenceSession
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.io.checkpoint import CheckpointError, LoadedModel
from pcsr_lightning.io.picture import from_pil, icc_fits, result_pixels, to_pil, upscale_alpha
from pcsr_lightning.io.weights import FOLDER_CONFIG, FOLDER_WEIGHTS, load_model
from pcsr_lightning.measure.flops import installed_conventions
from pcsr_lightning.measure.meter import FlopsMeter
from pcsr_lightning.models import model_classes

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
DEFAULT_PCSR_SCALE = 4.0  # the scale PCSR is trained and published at; any scale > 1 works
CONVENTIONS = installed_conventions()  # what ``Upscaled.gflops`` holds: fvcore's count with the flops extra only


@dataclass(frozen=True)
class ScaleRange:
    """The scales a model upscales by: from ``minimum`` (included or not) to ``maximum``; ``default``:
    the scale a call runs at when none is given."""

    minimum: float
    maximum: float
    minimum_included: bool
    default: float

    def __contains__(self, scale: float) -> bool:
        above = scale >= self.minimum if self.minimum_included else scale > self.minimum
        return bool(above and scale <= self.maximum)


@dataclass(frozen=True)
class SizeRequirements:
    """LR sizes a model takes: at least ``minimum`` pixels a side, a multiple of ``multiple_of``."""

    minimum: int = 1
    multiple_of: int = 1

    def check(self, height: int, width: int) -> bool:
        return all(v >= self.minimum and v % self.multiple_of == 0 for v in (height, width))


@dataclass
class Upscaled:
    """``SRModel.upscale``'s result: the image (the input's type), where each pixel went, what it cost."""

    image: Any
    classes: torch.Tensor | None  # (H,W), or (B,H,W) for a batch; 0 = the heaviest upsampler, M = skipped by
    # the flat-tile gate; None: original
    heavy_share: float | None  # share of pixels on the heavy upsamplers (``router.heavy_mask``)
    gflops: dict[str, float]  # per FLOPs convention ('paper'; 'fvcore' with the flops extra), a batch's images together
    skipped_share: float | None = None  # share of pixels the flat-tile gate skipped; None without it


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` (CUDA when there is one), ``cpu`` or ``cuda[:N]``, checked against this machine."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, ValueError, TypeError) as err:
        raise ValueError(f"device {device!r} is not a device: use auto, cpu or cuda[:N]") from err
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: only cpu and cuda[:N] are supported")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device} requested but CUDA is not available on this machine")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return resolved


def check_scale_value(scale: float) -> float:
    """A finite scale above 1 (inf and nan would make sizes meaningless)."""
    scale = float(scale)
    if not (math.isfinite(scale) and scale > 1):
        raise ValueError(f"scale must be a finite number > 1, got {scale}")
    return scale


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype) and dtype in DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in DTYPES:
        return DTYPES[dtype]
    raise ValueError(f"dtype must be None (the file's float32) or one of {list(DTYPES)}, got {dtype!r}")


class SRModel:
    """A loaded network ready to super-resolve; see ``load``."""

    def __init__(self, loaded: LoadedModel, device: str | torch.device = "auto", dtype=None,
                 memory_format: str = "auto"):
        self.loaded = loaded
        self.network = loaded.model
        self._layout_choice = memory_format
        self.device = resolve_device(device)
        self.memory_format = choose_memory_format(self.device, memory_format)
        self.dtype = resolve_dtype(dtype) or torch.float32
        if self.is_pcsr:
            cost_list(self.network, DEFAULT_PCSR_SCALE)  # kept per scale; computed before any cast
        self.network.to(self.device, self.dtype)
        in_memory_format(self.network, self.memory_format)
        self._meter: FlopsMeter | None = None

    # Moving and casting, as on a torch module; each returns the model itself.
    def to(self, device: str | torch.device | None = None, dtype: str | torch.dtype | None = None) -> SRModel:
        """To ``device`` (its memory layout chosen again, as ``load`` chooses it) and/or ``dtype``."""
        if device is not None:
            self.device = resolve_device(device)
            self.memory_format = choose_memory_format(self.device, self._layout_choice)
        if dtype is not None:
            self.dtype = resolve_dtype(dtype)
        self.network.to(self.device, self.dtype)
        in_memory_format(self.network, self.memory_format)
        return self

    def cpu(self) -> SRModel:
        return self.to("cpu")

    def cuda(self, index: int | None = None) -> SRModel:
        return self.to("cuda" if index is None else f"cuda:{index}")

    def float(self) -> SRModel:
        return self.to(dtype=torch.float32)

    def half(self) -> SRModel:
        return self.to(dtype=torch.float16)

    def bfloat16(self) -> SRModel:
        return self.to(dtype=torch.bfloat16)

    def eval(self) -> SRModel:
        """Inference mode for the network's layers (it is loaded so already; kept for the torch idiom)."""
        self.network.eval()
        return self

    # What the model is.
    @property
    def kind(self) -> str:
        """``pcsr`` or ``original``."""
        return self.loaded.kind

    @property
    def is_pcsr(self) -> bool:
        return self.loaded.is_pcsr

    @property
    def scale(self) -> int | None:
        """The one scale an original network upscales by; None for PCSR, which takes any scale > 1."""
        return None if self.is_pcsr else int(self.network.scale)

    @property
    def num_classes(self) -> int:
        """Upsamplers a PCSR pixel can go to (M); 1 for an original network."""
        return self.network.num_classes if self.is_pcsr else 1

    @property
    def has_learned_gate(self) -> bool:
        """Whether the network holds a trained flat-tile gate (``skip_gate="learned"``)."""
        return self.is_pcsr and getattr(self.network, "gate", None) is not None

    @property
    def fill_scale(self) -> int | None:
        """The scale of the network's fitted fill of skipped tiles (``skip_fill="linear"``), None without one."""
        fill = getattr(self.network, "fill", None) if self.is_pcsr else None
        return None if fill is None else fill.scale

    # What it takes and gives, as spandrel's model descriptors say it.
    input_channels = 3  # RGB in
    output_channels = 3  # RGB out

    @property
    def supported_scales(self) -> ScaleRange:
        """The scales a call may ask for: an original network's one factor, or any scale > 1 for PCSR."""
        if self.scale is not None:
            return ScaleRange(float(self.scale), float(self.scale), True, float(self.scale))
        return ScaleRange(1.0, math.inf, False, DEFAULT_PCSR_SCALE)

    @property
    def size_requirements(self) -> SizeRequirements:
        """Any LR size of at least one pixel: the networks pad their convolutions, PCSR samples any grid."""
        return SizeRequirements()

    @property
    def tiling(self) -> str:
        """``supported``: PCSR's backbone runs on LR tiles (``tile=``) with the same result, its halo the
        receptive radius; ``none``: an original network runs whole (``tile`` is ignored)."""
        return "supported" if self.is_pcsr else "none"

    @property
    def supported_dtypes(self) -> tuple[str, ...]:
        return tuple(name for name, flag in (("float32", True), ("float16", self.supports_half),
                                             ("bfloat16", self.supports_bfloat16)) if flag)

    def describe(self) -> dict:
        """What the model is and takes, as plain data."""
        scales = self.supported_scales
        return {"kind": self.kind, "architecture": type(self.network).__name__, "classes": self.num_classes,
                "input_channels": self.input_channels, "output_channels": self.output_channels,
                "scales": {"minimum": scales.minimum, "maximum": scales.maximum,
                           "minimum_included": scales.minimum_included, "default": scales.default},
                "size_requirements": {"minimum": self.size_requirements.minimum,
                                      "multiple_of": self.size_requirements.multiple_of},
                "tiling": self.tiling, "dtypes": list(self.supported_dtypes), "device": str(self.device),
                "dtype": str(self.dtype).removeprefix("torch."), "learned_gate": self.has_learned_gate,
                "linear_fill_scale": self.fill_scale}

    @property
    def supports_half(self) -> bool:
        return self._project_class() or bool(getattr(self.network, "supports_half", False))

    @property
    def supports_bfloat16(self) -> bool:
        return self._project_class() or bool(getattr(self.network, "supports_bfloat16", False))

    def _project_class(self) -> bool:
        """The project's networks run in float16 and bfloat16 (tested); a user's class says so itself."""
        return type(self.network) in set(model_classes().values())

    def cost_list(self, scale: float = DEFAULT_PCSR_SCALE) -> torch.Tensor:
        """Normalised per-upsampler costs (U_0 the heaviest) the cost knob k weighs; PCSR only."""
        if not self.is_pcsr:
            raise ValueError("an original network has no cost list: it runs every pixel the same way")
        return cost_list(self.network, check_scale_value(scale))

    def __repr__(self) -> str:
        scale = "any scale" if self.scale is None else f"x{self.scale}"
        return (f"SRModel({type(self.network).__name__}, kind={self.kind}, {scale}, classes={self.num_classes}"
                f"{', learned gate' if self.has_learned_gate else ''}"
                f"{'' if self.fill_scale is None else f', linear fill x{self.fill_scale}'}, device={self.device}, "
                f"dtype={str(self.dtype).removeprefix('torch.')})")

    # Running it.
    def check_scale(self, scale: float | None) -> float:
        """The scale a call runs at: the network's own for an original network, default x4 for PCSR."""
        if scale is None:
            return float(self.scale or DEFAULT_PCSR_SCALE)
        scale = check_scale_value(scale)
        if self.scale is not None and scale != float(self.scale):
            raise ValueError(f"this original network upscales x{self.scale} only, got scale={scale:g}")
        return scale

    def prepare_input(self, lr: torch.Tensor) -> torch.Tensor:
        """(B,3,h,w) in [0,1] on the model's device, dtype and memory layout."""
        return as_input(lr.to(self.device, self.dtype), self.memory_format)

    @torch.no_grad()
    def super_resolve(self, lr: torch.Tensor, scale: float | None = None,
                      routing: RoutingSpec = RoutingSpec()) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The one routed entry point: (B,3,h,w) in [0,1] -> (SR (B,3,H,W), not clamped; class map (B,H,W)
        or None for an original network)."""
        out = self._run(lr, scale, routing)
        return (out, None) if isinstance(out, torch.Tensor) else (out.sr, out.classes)

    def session(self, lr: torch.Tensor, scale: float | None = None) -> InferenceSession:
        """An inference session on (B,3,h,w) ``lr`` in [0,1]: prepared once, routed per k and gate (PCSR only)."""
        if not self.is_pcsr:
            raise ValueError("an original network has no routing: call the model instead of opening a session")
        return InferenceSession(self.network, self.prepare_input(lr), self.check_scale(scale))

    def _run(self, lr: torch.Tensor, scale: float | None, routing: RoutingSpec) -> torch.Tensor | RoutedSR:
        """``super_resolve``'s work: the routed result (with the gate's plan) for PCSR, the SR batch otherwise."""
        scale = self.check_scale(scale)
        if not self.is_pcsr:
            return self.network(self.prepare_input(lr))
        routing.check_model(self.network, scale)
        return self.session(lr, scale).run(routing)

    def gflops(self, lr_size: tuple[int, int], scale: float, classes: torch.Tensor | None,
               backbone_pixels: int | None = None, extra: dict[str, dict[str, int]] | None = None) -> dict[str, float]:
        """GFLOPs of one image in both conventions, on the routing it got. With the flat-tile gate: the
        backbone on ``backbone_pixels`` LR pixels and ``extra`` parts per convention (the gate's own work);
        class M in ``classes`` are the skipped pixels (no classifier, no upsampler)."""
        if self._meter is None:
            self._meter = FlopsMeter(self.network)
        counts = None
        if classes is not None:
            m = self.num_classes
            counts = torch.bincount(classes.flatten().cpu(), minlength=m + 1).tolist()
            if counts[m] == 0 and backbone_pixels is None:
                counts = counts[:m]
        return {c: self._meter.image(lr_size, scale, counts, c, backbone_pixels, (extra or {}).get(c)) / 1e9
                for c in CONVENTIONS}

    def upscale(self, image, scale: float | None = None, routing: RoutingSpec | None = None,
                **options) -> Upscaled:
        """Super-resolve ``image`` (see ``__call__``) and say where each pixel went and what it cost."""
        routing = RoutingSpec.of(routing, **options)
        batch, restore = to_batch(image)
        scale = self.check_scale(scale)
        out = self._run(batch, scale, routing)
        sr, classes = (out, None) if isinstance(out, torch.Tensor) else (out.sr, out.classes)
        gate = None if isinstance(out, torch.Tensor) else out.gate
        lr_size = tuple(batch.shape[-2:])
        flops: dict[str, float] = {c: 0.0 for c in CONVENTIONS}
        for i in range(batch.shape[0]):
            if gate is None:
                one = self.gflops(lr_size, scale, None if classes is None else classes[i])
            else:  # the plan's window and gate counts cover the whole batch: each image gets its share
                n = batch.shape[0]
                if self._meter is None:
                    self._meter = FlopsMeter(self.network)
                extra = {c: {part: v / n for part, v in gate.counted_parts(c, self._meter).items()}
                         for c in CONVENTIONS}
                one = self.gflops(lr_size, scale, classes[i], gate.encoded_pixels / n, extra)
            flops = {c: flops[c] + one[c] for c in CONVENTIONS}
        skipped = None if gate is None else skipped_share(classes, self.num_classes)
        single = batch.shape[0] == 1 and not (isinstance(image, torch.Tensor) and image.dim() == 4)
        if classes is not None and single:
            classes = classes[0]
        share = heavy_share(classes, self.num_classes)
        return Upscaled(restore(sr), None if classes is None else classes.cpu(), share, flops, skipped)

    def __call__(self, image, scale: float | None = None, routing: RoutingSpec | None = None, **options):
        """The SR image, of the input's type: a PIL image, an HxWx3 numpy array (uint8, or float in [0,1]) or
        a tensor ((3,H,W) or (B,3,H,W), float in [0,1] or uint8). Values are clamped to the image range; an
        integer input comes back with its dtype, rounded as the commands' PNGs are.

        How PCSR routes: ``routing=RoutingSpec(...)``, or the CLI's options by name (``k``, ``adaptive``,
        ``refine``, ``tile``, ``skip_flat`` (the flat-tile gate's threshold; None: off), ``skip_tile``,
        ``skip_halo``, ``skip_gate``, ``skip_fill``, ``skip_budget``: the dB below PCSR the gate may lose,
        deciding per image how much to skip), see ``inference.spec``; original networks ignore it."""
        routing = RoutingSpec.of(routing, **options)
        batch, restore = to_batch(image)
        sr, _ = self.super_resolve(batch, scale, routing)
        return restore(sr)

    # Sharing it.
    def save_pretrained(self, folder: str | Path, results: Sequence[Mapping[str, Any]] | None = None,
                        license: str | None = None) -> Path:
        """The model as a model folder to share: config.json, model.safetensors (float32) and a model card
        README.md; ``results``: dicts of dataset, psnr and optionally scale, k, gflops, for the card."""
        return save_pretrained(self.loaded, folder, results, license)

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "auto",
                        dtype: str | torch.dtype | None = None, memory_format: str = "auto") -> SRModel:
        """``pcsr_lightning.from_pretrained``."""
        return from_pretrained(folder, device, dtype, memory_format)


def _check_pixels(x: torch.Tensor) -> torch.Tensor:
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"image must be RGB: (3,H,W) or (B,3,H,W) as a tensor, HxWx3 as an array; got shape "
                         f"{tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"image is empty: shape {tuple(x.shape)}")
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        raise ValueError(f"image has {int((~torch.isfinite(x)).sum())} non-finite value(s) (nan or inf)")
    return x


# The integer pixel types with an agreed range (0 to the type's largest value); a wider or signed one
# (int64 from torch.tensor of a list, int32, uint32) holds values of no known scale and is refused.
PIXEL_INTEGERS = (torch.uint8, torch.uint16)
PIXEL_TYPES = "uint8 (0-255), uint16 (0-65535) or a float in [0, 1]"


def _float_batch(x: torch.Tensor) -> torch.Tensor:
    """An integer image scaled by its dtype's range, a float one clamped to [0, 1]."""
    if x.is_floating_point():
        return x.float().clamp(0, 1)
    if x.dtype not in PIXEL_INTEGERS:
        raise ValueError(f"image dtype {x.dtype} is not a pixel type with a known range (use {PIXEL_TYPES})")
    return x.float() / float(torch.iinfo(x.dtype).max)


def _to_int(sr: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    peak = float(torch.iinfo(dtype).max)
    return sr.float().clamp(0, 1).mul(peak).round().to(dtype)


def pil_batch(image: Image.Image):
    """``to_batch`` of a PIL image: the colour runs, the rest is kept (``io.picture``): its alpha upscaled by
    bicubic, grey written back as grey, 16-bit grey as 16-bit, the ICC profile and EXIF in ``info``."""
    picture = from_pil(image)

    def restore(sr: torch.Tensor) -> Image.Image:
        alpha = None if picture.alpha is None else upscale_alpha(picture.alpha[None], tuple(sr.shape[-2:]))[0]
        out = to_pil(result_pixels(picture, sr[0], alpha))
        icc = icc_fits(picture.icc, picture.channels)
        out.info.update({k: v for k, v in (("icc_profile", icc), ("exif", picture.exif)) if v})
        return out

    return _float_batch(_check_pixels(picture.colour[None])), restore


def to_batch(image):
    """(B,3,h,w) float32 in [0,1], and the function that turns an SR batch back into the input's type."""
    if isinstance(image, Image.Image):
        return pil_batch(image)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"image as a numpy array must be HxWx3 (RGB), got shape {image.shape}")
        if not (np.issubdtype(image.dtype, np.floating) or image.dtype in (np.uint8, np.uint16)):
            raise ValueError(f"image dtype {image.dtype} is not a pixel type with a known range (use {PIXEL_TYPES})")
        dtype = image.dtype
        array = image if image.flags.writeable and image.flags.c_contiguous else np.array(image)
        batch = torch.from_numpy(array).permute(2, 0, 1)[None]
        restore_np = (lambda sr: _to_int(sr[0], batch.dtype).permute(1, 2, 0).cpu().numpy()) if not \
            batch.is_floating_point() else (lambda sr: sr[0].float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
                                            .astype(dtype))
        return _float_batch(_check_pixels(batch)), restore_np
    if isinstance(image, torch.Tensor):
        single = image.dim() == 3
        batch = _check_pixels(image[None] if single else image)
        dtype, device = image.dtype, image.device

        def restore(sr: torch.Tensor) -> torch.Tensor:
            out = sr.float().clamp(0, 1).to(dtype) if dtype.is_floating_point else _to_int(sr, dtype)
            out = out.to(device)
            return out[0] if single else out

        return _float_batch(batch), restore
    raise TypeError(f"image must be a PIL image, a numpy array or a torch tensor, got {type(image).__name__}")


def load(source: str | Path, device: str | torch.device = "auto", dtype: str | torch.dtype | None = None,
         memory_format: str = "auto") -> SRModel:
    """A model from a .ckpt, a .safetensors, a model folder (config.json + model.safetensors), a training
    run's folder or its manifest.json, on ``device`` (``auto``: CUDA when there is one) in ``dtype``
    (None: float32; ``float16``/``bfloat16``) and the fastest memory layout for the device."""
    resolved = resolve_device(device)
    choose_memory_format(resolved, memory_format)  # a bad name fails before the file is read
    return SRModel(load_model(source), resolved, resolve_dtype(dtype), memory_format)


def from_pretrained(folder: str | Path, device: str | torch.device = "auto", dtype: str | torch.dtype | None = None,
                    memory_format: str = "auto") -> SRModel:
    """A model from a model folder (``save_pretrained``'s, ``pcsr convert --format folder``'s), as ``load``."""
    folder = Path(folder)
    if not (folder / FOLDER_CONFIG).is_file():
        what = ("a file, not a folder" if folder.is_file() else "not found" if not folder.exists()
                else f"no {FOLDER_CONFIG} in it")
        raise CheckpointError(f"{folder}: {what}; from_pretrained reads a model folder ({FOLDER_CONFIG} + "
                              f"{FOLDER_WEIGHTS}); pcsr_lightning.load also reads .ckpt and .safetensors files")
    return load(folder, device, dtype, memory_format)
