"""Evaluation of checkpoints on test folders: PSNR and GFLOPs per image, k sweeps, summaries and CSVs.

A k sweep runs the backbone and the classifier once per image (an ``InferenceSession``) and only
re-routes and renders for each k; with flat-tile gate thresholds (``skip_flat``) once more per threshold, which
gives rows per (k, threshold) beside the plain k sweep. Every PCSR row carries both FLOPs conventions
and, when the original network is given, their share of the original's FLOPs on the same image.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pcsr_lightning.evaluation.plot import Series, save_plot
from pcsr_lightning.evaluation.protocol import bicubic_sr, load_pair
from pcsr_lightning.inference.layout import choose_memory_format
from pcsr_lightning.inference.router import class_counts, heavy_share
from pcsr_lightning.inference.session import InferenceSession
from pcsr_lightning.inference.spec import GateSpec, RoutingSpec, check_budget
from pcsr_lightning.inference.srmodel import check_scale_value, load
from pcsr_lightning.io.checkpoint import LoadedModel
from pcsr_lightning.io.files import write_text
from pcsr_lightning.io.images import DEFAULT_MAX_PIXELS, ImageReadError, list_images, non_finite
from pcsr_lightning.measure.flops import CONVENTIONS
from pcsr_lightning.measure.meter import FlopsMeter
from pcsr_lightning.measure.metrics import METRICS, score, shave_for


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
    psnr_y: float | None = None  # with EvalSettings.metrics
    ssim: float | None = None
    skip_flat: float | None = None  # the flat-tile gate's threshold, None without the gate
    skipped_share: float | None = None  # share of HR pixels the gate skipped
    skip_budget: float | None = None  # the gate's loss budget in dB, None without one


EXTRA_METRICS = ("psnr_y", "ssim")  # beside RGB psnr, which every record has


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
    max_pixels: int = DEFAULT_MAX_PIXELS  # larger images are reported by name and skipped
    metrics: Sequence[str] = ("psnr",)  # any of psnr, psnr_y, ssim; RGB psnr is always measured
    memory_format: str = "auto"  # 'auto', 'channels_last' or 'contiguous', the same for both models
    skip_flat: Sequence[float] = ()  # flat-tile gate thresholds, each beside the plain k sweep; () = off
    skip_tile: int | None = None  # the gate's LR tile size; None: the gate's default (``GateSpec.tile``)
    skip_halo: int | None = None  # backbone halo of the gate's windows; None = the receptive radius (exact)
    skip_gate: str = GateSpec.scorer  # the gate's scorer: max |Laplacian|, or the model's ``learned`` gate
    skip_fill: str = GateSpec.fill  # the skipped tiles' fill: bicubic, or the model's fitted ``linear`` fill
    # the dB below PCSR each gate may lose per image (``budget.py``); the thresholds then bound its candidates
    # (none given: one gate, ``spec.BUDGET_CANDIDATES``); None: the thresholds alone decide
    skip_budget: float | None = None

    def __post_init__(self):
        """Refuse nonsense before any work: nan/inf k or scale, a pixel limit below 1, unknown metrics. The
        routing options are checked by the routing spec they build (``routes``, ``gates``)."""

        gate_options = {"skip_tile": self.skip_tile, "skip_halo": self.skip_halo, "skip_gate": self.skip_gate,
                        "skip_fill": self.skip_fill, "skip_budget": self.skip_budget}
        RoutingSpec.build(adaptive=self.adaptive, refine=self.refine, **gate_options)  # without any k or threshold too
        self.routes = [RoutingSpec.build(k, self.adaptive, self.refine) for k in self.ks]
        self.ks = [r.k for r in self.routes]
        thresholds = list(self.skip_flat) or ([None] if check_budget(self.skip_budget) is not None else [])
        self.gates = [RoutingSpec.build(skip_flat=t, **gate_options).gate for t in thresholds]
        self.skip_flat = [g.threshold for g in self.gates]
        self.skip_budget = check_budget(self.skip_budget)
        self.scale = check_scale_value(self.scale)
        if int(self.max_pixels) < 1:
            raise ValueError(f"max_pixels must be >= 1, got {self.max_pixels}")
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(METRICS)}")
        choose_memory_format(self.device, self.memory_format)  # a bad name fails here


def scores(settings: EvalSettings, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, float]:
    """RGB psnr and the extra metrics the settings ask for, under the protocol's shave."""
    names = ["psnr", *[m for m in settings.metrics if m != "psnr"]]
    return score(names, sr, hr, shave_for(settings.scale))


def _gflops(meter: FlopsMeter, lr_size, scale: float, counts, gate=None) -> dict[str, float]:
    """Both conventions; with a gate, the backbone on its windows and its own work added."""
    if gate is None:
        return {f"gflops_{c}": meter.image(lr_size, scale, counts, c) / 1e9 for c in CONVENTIONS}
    return {f"gflops_{c}": meter.image(lr_size, scale, counts, c, gate.encoded_pixels,
                                       gate.counted_parts(c, meter)) / 1e9 for c in CONVENTIONS}


class NonFiniteResult(ValueError):
    """An SR image with NaN or inf values: its PSNR would be nan or, clamped, a number that means nothing."""


def finite_result(sr: torch.Tensor, name: str, setting: str) -> torch.Tensor:
    bad = non_finite(sr)
    if bad:
        raise NonFiniteResult(f"{name}: the SR result ({setting}) has {bad:,} non-finite value(s) (NaN or inf) "
                              f"out of {sr.numel():,}")
    return sr


@torch.no_grad()
def evaluate_image(
    loaded: LoadedModel, meter: FlopsMeter, name: str, hr: torch.Tensor, lr: torch.Tensor, settings: EvalSettings
) -> list[Record]:
    """All settings of one model on one image; PCSR prepares once and re-routes per k."""
    model, scale = loaded.model, settings.scale
    lr_size = tuple(lr.shape[-2:])
    if not loaded.is_pcsr:
        sr = finite_result(model(lr[None]), name, "original")
        return [Record(name, "original", "original", None, heavy_share=None, **scores(settings, sr[0], hr),
                       **_gflops(meter, lr_size, scale, None))]
    session = InferenceSession(model, lr[None], scale)
    m = model.num_classes
    ends = [("all-light", m - 1), ("all-heavy", 0)] if settings.ends else []
    records = []
    for gate in [None, *settings.gates]:
        routes = [r.with_gate(gate) for r in settings.routes] if not settings.adaptive else \
            [RoutingSpec(adaptive=True, refine=settings.refine, gate=gate)]
        runs = [(r, "adaptive" if r.adaptive else "k", None if r.adaptive else r.k, None) for r in routes]
        runs += [(None, setting, None, cls) for setting, cls in ends] if gate is None else []
        for routing, setting, k, cls in runs:
            out = session.run(routing) if cls is None else session.forced(cls, settings.refine)
            where = setting if k is None else f"k={k:g}"
            finite_result(out.sr, name, where if gate is None else f"{where}, skip {gate.threshold:g}")
            counts = class_counts(out.classes, m + (gate is not None))
            extra = {} if gate is None else {"skip_flat": gate.threshold, "skipped_share": counts[m] / sum(counts),
                                             "skip_budget": gate.budget}
            records.append(Record(name, "pcsr", setting, k, heavy_share=heavy_share(out.classes, m),
                                  **scores(settings, out.sr[0], hr),
                                  **_gflops(meter, lr_size, scale, counts, out.gate), **extra))
    return records


def add_shares(records: list[Record], originals: dict[str, Record]) -> None:
    """pct_* = 100 x GFLOPs / the original's GFLOPs on the same image."""
    for r in records:
        ref = originals.get(r.image)
        if ref is not None:
            r.pct_fvcore = 100 * r.gflops_fvcore / ref.gflops_fvcore
            r.pct_paper = 100 * r.gflops_paper / ref.gflops_paper


def reporting(images: list[Path], on_image: Callable[[int, int, str], None] | None) -> Iterator[Path]:
    """``images`` one by one; ``on_image(done, total, name)`` once each has been handled (scored or failed)."""
    for done, path in enumerate(images, 1):
        yield path
        if on_image is not None:
            on_image(done, len(images), path.name)


def evaluate(settings: EvalSettings, log: Callable[[str], None] = print,
             on_image: Callable[[int, int, str], None] | None = None) -> tuple[list[Record], int]:
    """Records for every image (and the original's, if given); the number of images that failed.
    ``on_image(done, total, name)`` after each image, as it goes (for progress)."""

    model = load(settings.ckpt, settings.device, memory_format=settings.memory_format)
    model.check_scale(settings.scale)
    if model.is_pcsr:  # before any image: the learned gate or fitted fill the gates ask for
        for gate in settings.gates:
            gate.check_model(model.network, settings.scale)
    loaded, device = model.loaded, model.device
    original = None
    if settings.original_ckpt:
        reference_model = load(settings.original_ckpt, device, memory_format=settings.memory_format)
        if reference_model.is_pcsr:
            raise ValueError(f"original_ckpt {settings.original_ckpt} is a PCSR checkpoint, not an original network")
        reference_model.check_scale(settings.scale)
        original = reference_model.loaded
    images = list_images(settings.hr_dir, on_skip=lambda path, reason: log(f"warning: skipping {path}: {reason}"))
    if not images:
        raise FileNotFoundError(f"no images in {settings.hr_dir}")
    lr_dir = Path(settings.lr_dir) if settings.lr_dir else None
    if lr_dir is not None and not lr_dir.is_dir():
        raise FileNotFoundError(f"LR folder not found: {lr_dir}")
    meter, original_meter = FlopsMeter(loaded.model), original and FlopsMeter(original.model)
    records: list[Record] = []
    reference: dict[str, Record] = {}
    failures = 0
    for path in reporting(images, on_image):
        try:
            hr, lr = load_pair(path, settings.scale, lr_dir, settings.crop, settings.max_pixels)
        except ImageReadError as err:
            log(f"error: {err}")
            failures += 1
            continue
        hr, lr = hr.to(device), lr.to(device)  # the models' weights set the convolutions' layout
        try:
            own = evaluate_image(loaded, meter, path.name, hr, lr, settings)
            ref = None if original is None else evaluate_image(original, original_meter, path.name, hr, lr, settings)[0]
        except NonFiniteResult as err:
            log(f"error: {err}; the image is left out")
            failures += 1
            continue
        if ref is not None:
            reference[path.name] = ref
            if loaded.is_pcsr:
                own.append(ref)
        records += own
        if settings.bicubic:
            records.append(Record(path.name, "bicubic", "bicubic", None, heavy_share=None,
                                  **scores(settings, bicubic_sr(hr, lr), hr), gflops_fvcore=0.0, gflops_paper=0.0))
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
        groups.setdefault((r.model, r.setting, r.k, r.skip_flat, r.skip_budget), []).append(r)
    rows = []
    for (model, setting, k, skip_flat, skip_budget), group in groups.items():
        row = {"model": model, "setting": setting, "k": k, "skip_flat": skip_flat, "skip_budget": skip_budget,
               "images": len(group),
               "psnr": _mean([r.psnr for r in group]),
               **{m: _mean([getattr(r, m) for r in group if getattr(r, m) is not None]) for m in EXTRA_METRICS},
               "heavy_share": _mean([r.heavy_share for r in group if r.heavy_share is not None]),
               "skipped_share": _mean([r.skipped_share for r in group if r.skipped_share is not None])}
        for c in CONVENTIONS:
            row[f"gflops_{c}"] = _mean([getattr(r, f"gflops_{c}") for r in group])
            ref = _mean([getattr(r, f"gflops_{c}") for r in originals])
            has_pct = ref and any(r.pct_paper is not None for r in group)
            row[f"pct_{c}"] = 100 * row[f"gflops_{c}"] / ref if has_pct else None
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

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, extrasaction="ignore")
    writer.writeheader()
    writer.writerows([{h: format_value(r.get(h)) for h in header} for r in rows])
    return buf.getvalue()


# The flat-tile gate's columns come last: empty without the gate, and earlier columns keep their places.
RECORD_COLUMNS = ["image", "model", "setting", "k", "psnr", "heavy_share", "gflops_fvcore", "gflops_paper",
                  "pct_fvcore", "pct_paper", "skip_flat", "skipped_share", "skip_budget"]


SUMMARY_COLUMNS = ["model", "setting", "k", "images", "psnr", "heavy_share", "gflops_fvcore", "gflops_paper",
                   "pct_fvcore", "pct_paper", "skip_flat", "skipped_share", "skip_budget"]


def with_metrics(columns: list[str], metrics: Sequence[str]) -> list[str]:
    """``columns`` with the extra metric columns asked for right after ``psnr``."""
    extra = [m for m in EXTRA_METRICS if m in metrics]
    i = columns.index("psnr") + 1
    return columns[:i] + extra + columns[i:]


def curve_series(summary: list[dict], label: str, original_label: str = "original") -> list:
    """The k curve, the original's point and the all-light / all-heavy ends of one summary."""

    def pick(setting):
        return [r for r in summary if r["setting"] == setting]

    series = []
    thresholds = sorted({r.get("skip_flat") for r in pick("k")}, key=lambda t: -1 if t is None else t)
    for threshold in thresholds:  # the plain k sweep, then one curve per gate threshold
        ks = sorted((r for r in pick("k") if r.get("skip_flat") == threshold), key=lambda r: r["gflops_paper"])
        name = f"{label} (k sweep)" if threshold is None else f"{label} skip {threshold:g} (k sweep)"
        series.append(Series(name, [(r["gflops_paper"], r["psnr"]) for r in ks],
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
                  plot: str | None = None, title: str = "PSNR vs GFLOPs", metrics: Sequence[str] = ("psnr",)
                  ) -> list[Path]:
    """Per-image CSV (ending with a ``mean`` row per model/setting/k), summary CSV and the PSNR-vs-GFLOPs
    plot, each written atomically when asked for; ``metrics`` adds the psnr_y / ssim columns."""

    written = []
    if out:
        means = [dict(row, image="mean") for row in summary]
        written.append(write_text(rows_to_csv(with_metrics(RECORD_COLUMNS, metrics), record_dicts(records) + means),
                                  out))
    if summary_out:
        written.append(write_text(rows_to_csv(with_metrics(SUMMARY_COLUMNS, metrics), summary), summary_out))
    if plot:
        written.append(save_plot(curve_series(summary, "PCSR"), plot, title))
    return written
