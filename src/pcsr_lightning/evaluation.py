"""Evaluation protocol of the paper's table: test sets by folder, PSNR and GFLOPs per image, k sweeps.

A k sweep runs the backbone and the classifier once per image (``routed.prepare``) and only re-routes
and renders for each k. Every PCSR row carries both FLOPs conventions and, when the original network is
given, their share of the original's FLOPs on the same image.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pcsr_lightning.checkpoint import LoadedModel, load_checkpoint
from pcsr_lightning.data.bicubic import imresize
from pcsr_lightning.data.io import ImageReadError, list_images, read_image
from pcsr_lightning.measure import FlopsMeter, class_counts
from pcsr_lightning.metrics import psnr, shave_for
from pcsr_lightning.models.routed import forced_classes, prepare, render, route
from pcsr_lightning.predict import check_scale

CONVENTIONS = ("fvcore", "paper")


def make_pair(hr: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Crop HR so that round(h * s) fits it, then LR = bicubic(HR) at floor(H / s) x floor(W / s)."""
    h, w = int(hr.shape[-2] // scale), int(hr.shape[-1] // scale)
    if h < 1 or w < 1:
        raise ImageReadError(f"image of {tuple(hr.shape[-2:])} is too small for x{scale}")
    hh, ww = round(h * scale), round(w * scale)
    hr = hr[..., :hh, :ww]
    return hr, imresize(hr, (h, w))


def paper_crop_size(n: int) -> int:
    """Largest 28m + 4 <= n: the LR side the paper's table keeps (32x32 patches with step 28)."""
    if n < 32:
        raise ImageReadError(f"LR side {n} is below 32, too small for --crop paper")
    return 28 * ((n - 4) // 28) + 4


def crop_paper(hr: torch.Tensor, lr: torch.Tensor, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left crop of the LR to 28m + 4 on each side, HR to match."""
    h, w = paper_crop_size(lr.shape[-2]), paper_crop_size(lr.shape[-1])
    return hr[..., : round(h * scale), : round(w * scale)], lr[..., :h, :w]


def find_lr(lr_dir: Path, hr_path: Path, scale: float) -> Path:
    """The LR file paired with an HR file: same stem, or stem + 'x4' (DIV2K style), any image extension."""
    candidates = [p for p in list_images(lr_dir) if p.stem in (hr_path.stem, f"{hr_path.stem}x{scale:g}")]
    if not candidates:
        raise ImageReadError(f"no LR image for {hr_path.name} in {lr_dir}")
    return candidates[0]


def load_pair(hr_path: Path, scale: float, lr_dir: Path | None, crop: str | None):
    """(HR, LR) for one test image: LR by MATLAB bicubic, or read from ``lr_dir`` and checked."""
    hr = read_image(hr_path)
    if lr_dir is None:
        hr, lr = make_pair(hr, scale)
    else:
        lr = read_image(find_lr(lr_dir, hr_path, scale))
        hh, ww = round(lr.shape[-2] * scale), round(lr.shape[-1] * scale)
        if hr.shape[-2] < hh or hr.shape[-1] < ww:
            raise ImageReadError(
                f"{hr_path.name}: HR {tuple(hr.shape[-2:])} is smaller than x{scale:g} of its LR {tuple(lr.shape[-2:])}"
            )
        hr = hr[..., :hh, :ww]
    if crop == "paper":
        hr, lr = crop_paper(hr, lr, scale)
    elif crop not in (None, "none"):
        raise ValueError(f"unknown crop {crop!r}; expected 'paper' or 'none'")
    return hr, lr


def bicubic_psnr(hr: torch.Tensor, lr: torch.Tensor, scale: float) -> float:
    """PSNR of the (3,h,w) LR upscaled by MATLAB-style bicubic: the baseline every SR network must beat."""
    return psnr(imresize(lr[None], tuple(hr.shape[-2:]))[0], hr, shave_for(scale))


@dataclass
class Record:
    """One image under one setting. ``setting``: 'k', 'adaptive', 'all-light', 'all-heavy', 'original' or
    'bicubic' (the baseline every SR network must beat; no network, 0 GFLOPs counted)."""

    image: str
    model: str  # 'pcsr' or 'original'
    setting: str
    k: float | None
    psnr: float
    heavy_share: float | None
    gflops_fvcore: float
    gflops_paper: float
    pct_fvcore: float | None = None
    pct_paper: float | None = None


@dataclass
class EvalSettings:
    ckpt: str
    hr_dir: str
    lr_dir: str | None = None
    original_ckpt: str | None = None
    scale: float = 4.0
    ks: Sequence[float] = (0.0,)
    adaptive: bool = False
    refine: bool = True
    crop: str | None = None
    ends: bool = False
    bicubic: bool = False
    device: str = "cpu"


def _gflops(meter: FlopsMeter, lr_size, scale: float, counts) -> dict[str, float]:
    return {f"gflops_{c}": meter.image(lr_size, scale, counts, c) / 1e9 for c in CONVENTIONS}


@torch.no_grad()
def evaluate_image(
    loaded: LoadedModel, meter: FlopsMeter, name: str, hr: torch.Tensor, lr: torch.Tensor, settings: EvalSettings
) -> list[Record]:
    """All settings of one model on one image; PCSR prepares once and re-routes per k."""
    model, scale = loaded.model, settings.scale
    lr_size = tuple(lr.shape[-2:])
    crop = shave_for(scale)
    if not loaded.is_pcsr:
        sr = model(lr[None])
        return [Record(name, "original", "original", None, psnr(sr[0], hr, crop), None,
                       **_gflops(meter, lr_size, scale, None))]
    prepared = prepare(model, lr[None], scale)
    m = model.num_classes
    plan: list[tuple[str, float | None, torch.Tensor]] = []
    if settings.adaptive:
        plan.append(("adaptive", None, route(model, prepared, 0.0, adaptive=True)))
    else:
        plan += [("k", float(k), route(model, prepared, float(k))) for k in settings.ks]
    if settings.ends:
        plan += [("all-light", None, forced_classes(prepared, m - 1)), ("all-heavy", None, forced_classes(prepared, 0))]
    records = []
    for setting, k, classes in plan:
        out = render(model, prepared, classes, settings.refine)
        counts = class_counts(classes, m)
        records.append(Record(name, "pcsr", setting, k, psnr(out.sr[0], hr, crop), counts[0] / sum(counts),
                              **_gflops(meter, lr_size, scale, counts)))
    return records


def add_shares(records: list[Record], originals: dict[str, Record]) -> None:
    """pct_* = 100 x GFLOPs / the original's GFLOPs on the same image."""
    for r in records:
        ref = originals.get(r.image)
        if ref is not None:
            r.pct_fvcore = 100 * r.gflops_fvcore / ref.gflops_fvcore
            r.pct_paper = 100 * r.gflops_paper / ref.gflops_paper


def evaluate(settings: EvalSettings, log: Callable[[str], None] = print) -> tuple[list[Record], int]:
    """Records for every image (and the original's, if given); the number of images that failed."""
    from pcsr_lightning.predict import resolve_device

    device = resolve_device(settings.device)
    loaded = load_checkpoint(settings.ckpt, map_location=device)
    check_scale(loaded, settings.scale)
    original = None
    if settings.original_ckpt:
        original = load_checkpoint(settings.original_ckpt, map_location=device)
        if original.is_pcsr:
            raise ValueError(f"--original-ckpt {settings.original_ckpt} is a PCSR checkpoint, not an original network")
        check_scale(original, settings.scale)
    images = list_images(settings.hr_dir)
    if not images:
        raise FileNotFoundError(f"no images in {settings.hr_dir}")
    lr_dir = Path(settings.lr_dir) if settings.lr_dir else None
    if lr_dir is not None and not lr_dir.is_dir():
        raise FileNotFoundError(f"LR folder not found: {lr_dir}")
    meter, original_meter = FlopsMeter(loaded.model), original and FlopsMeter(original.model)
    records: list[Record] = []
    reference: dict[str, Record] = {}
    failures = 0
    for path in images:
        try:
            hr, lr = load_pair(path, settings.scale, lr_dir, settings.crop)
        except ImageReadError as err:
            log(f"error: {err}")
            failures += 1
            continue
        hr, lr = hr.to(device), lr.to(device)
        own = evaluate_image(loaded, meter, path.name, hr, lr, settings)
        if original is not None:
            ref = evaluate_image(original, original_meter, path.name, hr, lr, settings)[0]
            reference[path.name] = ref
            if loaded.is_pcsr:
                own.append(ref)
        records += own
        if settings.bicubic:
            records.append(Record(path.name, "bicubic", "bicubic", None, bicubic_psnr(hr, lr, settings.scale), None,
                                  0.0, 0.0))
    if original is not None:
        add_shares(records, reference)
    return records, failures


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarize(records: list[Record]) -> list[dict]:
    """Mean per (model, setting, k) over images; pct_* = ratio of the mean GFLOPs, as the paper's table."""
    originals = [r for r in records if r.model == "original"]
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        groups.setdefault((r.model, r.setting, r.k), []).append(r)
    rows = []
    for (model, setting, k), group in groups.items():
        row = {"model": model, "setting": setting, "k": k, "images": len(group),
               "psnr": _mean([r.psnr for r in group]),
               "heavy_share": _mean([r.heavy_share for r in group if r.heavy_share is not None])}
        for c in CONVENTIONS:
            row[f"gflops_{c}"] = _mean([getattr(r, f"gflops_{c}") for r in group])
            ref = _mean([getattr(r, f"gflops_{c}") for r in originals])
            row[f"pct_{c}"] = 100 * row[f"gflops_{c}"] / ref if ref and any(r.pct_paper is not None for r in group) else None
        rows.append(row)
    return rows


def record_dicts(records: list[Record]) -> list[dict]:
    return [asdict(r) for r in records]


def format_value(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:.6f}"
    return str(value)


def rows_to_csv(header: list[str], rows: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{h: format_value(r.get(h)) for h in header} for r in rows])
    return buf.getvalue()


RECORD_COLUMNS = ["image", "model", "setting", "k", "psnr", "heavy_share", "gflops_fvcore", "gflops_paper",
                  "pct_fvcore", "pct_paper"]
SUMMARY_COLUMNS = ["model", "setting", "k", "images", "psnr", "heavy_share", "gflops_fvcore", "gflops_paper",
                   "pct_fvcore", "pct_paper"]


def curve_series(summary: list[dict], label: str, original_label: str = "original") -> list:
    """The k curve, the original's point and the all-light / all-heavy ends of one summary."""
    from pcsr_lightning.plot import Series

    def pick(setting):
        return [r for r in summary if r["setting"] == setting]

    series = []
    ks = sorted(pick("k"), key=lambda r: r["gflops_paper"])
    if ks:
        series.append(Series(f"{label} (k sweep)", [(r["gflops_paper"], r["psnr"]) for r in ks],
                             notes=[f"k={r['k']:g}" for r in ks], group=label))
    for setting, marker in (("adaptive", "circle"), ("original", "square")):
        rows = pick(setting)
        if rows:
            name = original_label if setting == "original" else f"{label} (adaptive)"
            series.append(Series(name, [(r["gflops_paper"], r["psnr"]) for r in rows], line=False, marker=marker,
                                 group=label))
    ends = pick("all-light") + pick("all-heavy")
    if ends:
        series.append(Series(f"{label} all-light / all-heavy", [(r["gflops_paper"], r["psnr"]) for r in ends],
                             line=False, marker="diamond", notes=[r["setting"] for r in ends], group=label))
    return series


def write_outputs(records: list[Record], summary: list[dict], out: str | None = None, summary_out: str | None = None,
                  plot: str | None = None, title: str = "PSNR vs GFLOPs") -> list[Path]:
    """Per-image CSV (ending with a ``mean`` row per model/setting/k), summary CSV and the PSNR-vs-GFLOPs
    plot, each written atomically when asked for."""
    from pcsr_lightning.data.io import write_text
    from pcsr_lightning.plot import save_plot

    written = []
    if out:
        means = [dict(row, image="mean") for row in summary]
        written.append(write_text(rows_to_csv(RECORD_COLUMNS, record_dicts(records) + means), out))
    if summary_out:
        written.append(write_text(rows_to_csv(SUMMARY_COLUMNS, summary), summary_out))
    if plot:
        written.append(save_plot(curve_series(summary, "PCSR"), plot, title))
    return written
