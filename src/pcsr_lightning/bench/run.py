"""Wall-clock benchmark of routed PCSR against the network it accelerates, side by side in one run.

Small pure pieces (``inputs``, ``timing``, the table here) that tests check one by one, and ``run_bench``,
which puts them together for ``pcsr bench`` (a thin command: parse, call, print). Timings are medians of
synchronized repeats after a warm-up. Every PCSR variant is one ``RoutingSpec`` run from scratch through
an inference session, so the times are end to end.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch

from pcsr_lightning.bench.inputs import photo_crop, photo_mosaic
from pcsr_lightning.bench.timing import Stage, machine_info, op_profile, paired_ratio, time_rounds
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.inference.layout import as_input, choose_memory_format, format_name
from pcsr_lightning.inference.reference import class_map_agreement, upscale_reference
from pcsr_lightning.inference.routed import backbone_features
from pcsr_lightning.inference.router import cost_list
from pcsr_lightning.inference.session import InferenceSession, upscale, upscale_forced
from pcsr_lightning.inference.spec import BUDGET_CANDIDATES, GateSpec, RoutingSpec, check_budget, check_tile
from pcsr_lightning.inference.srmodel import load, resolve_device
from pcsr_lightning.inference.tiling import receptive_radius
from pcsr_lightning.inference.workers import routed_threads
from pcsr_lightning.measure.memory import call_peak_mb
from pcsr_lightning.measure.metrics import psnr, shave_for


@dataclass
class Row:
    """One measured variant."""

    name: str
    ms: float
    psnr: float
    heavy_share: float | None
    peak_mb: float
    times_ms: list[float]
    skipped_share: float | None = None  # the flat-tile gate's variants

    def as_dict(self) -> dict:
        return asdict(self)


def ratio_rows(rows: list[Row], baseline: str = "original") -> list[list[str]]:
    """Table cells: name, median ms, paired ratio to the baseline, PSNR, heavy share, peak memory, skipped share."""
    base = next(r for r in rows if r.name == baseline)
    return [
        [
            r.name,
            f"{r.ms:.1f}",
            f"{paired_ratio(r.times_ms, base.times_ms):.3f}",
            f"{r.psnr:.3f}",
            "-" if r.heavy_share is None else f"{r.heavy_share:.3f}",
            f"{r.peak_mb:,.0f}",
            "-" if r.skipped_share is None else f"{r.skipped_share:.3f}",
        ]
        for r in rows
    ]


TABLE_HEADER = ["variant", "median ms", "x original", "PSNR dB", "heavy share", "peak MiB", "skipped"]


# ---------------------------------------------------------------- the whole benchmark

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
GUARD_DB = 0.05  # low precision may cost at most this much PSNR against fp32
ROUTED_FAST, ROUTED_REFERENCE = "routed part, fast", "routed part, reference"  # timed on given features
BACKBONE = "pcsr backbone alone"  # shared by the fast and the reference path


@dataclass
class BenchSettings:
    """What ``pcsr bench`` measures: two checkpoints on a photo mosaic of ``hr_size`` (H, W)."""

    pcsr_ckpt: str
    original_ckpt: str
    hr_size: tuple[int, int]
    scale: int = 4
    device: str = "cpu"
    ks: Sequence[float] = (0.0,)
    precision: str = "fp32"
    memory_format: str = "auto"  # as pcsr upscale picks it (``inference.layout``), the same for both models
    repeats: int = 3
    reference_repeats: int = 1
    reference: bool = True
    tile: int = 0
    profile: bool = False
    routed_threads: int | None = None  # the routed part's workers (``workers.routed_threads``); None: its default
    skip_flat: Sequence[float] = ()  # flat-tile gate thresholds: a variant per (k, threshold, halo)
    skip_tile: int = GateSpec.tile
    skip_halo: Sequence[int | None] = (None,)  # None: the receptive radius
    skip_gate: str = GateSpec.scorer  # the gate's scorer (``spec.SCORERS``)
    skip_fill: str = GateSpec.fill  # the skipped tiles' fill (``spec.FILLS``)
    # the dB below PCSR each gate may lose (``budget.py``); the thresholds bound its candidates (none given:
    # ``spec.BUDGET_CANDIDATES``); None: the thresholds alone decide
    skip_budget: float | None = None
    hr_image: str | None = None  # a photo, centre-cropped to hr_size, instead of the mosaic
    ends: bool = True  # the all-heavy / all-light variants
    routes: list[RoutingSpec] = field(default_factory=list, init=False, repr=False)  # per k, built by check
    gates: list[GateSpec] = field(default_factory=list, init=False, repr=False)  # per (threshold, halo)

    def check(self) -> None:
        if self.repeats < 1 or self.reference_repeats < 1:
            raise ValueError(
                f"--repeats and --reference-repeats must be >= 1, got {self.repeats}, {self.reference_repeats}"
            )
        if isinstance(self.scale, bool) or not isinstance(self.scale, int) or self.scale < 2:
            raise ValueError(f"scale must be an integer >= 2 (the original network's factor), got {self.scale!r}")
        h, w = self.hr_size
        if h % self.scale or w % self.scale:
            raise ValueError(f"--hr-size {h}x{w} must be divisible by --scale {self.scale}")
        if self.precision not in DTYPES:
            raise ValueError(f"unknown precision {self.precision!r}; expected one of {sorted(DTYPES)}")
        self.routes = [RoutingSpec(k, tile=check_tile(self.tile)) for k in self.ks]
        budget = check_budget(self.skip_budget)
        thresholds = list(self.skip_flat) or ([BUDGET_CANDIDATES] if budget is not None else [])
        self.gates = [GateSpec(t, self.skip_tile, halo, self.skip_gate, self.skip_fill, budget)
                      for t in thresholds for halo in self.skip_halo]
        for halo in self.skip_halo:  # the gate's options are checked without thresholds too
            GateSpec(0.0, self.skip_tile, halo, self.skip_gate, self.skip_fill, budget)


def bench_model(path: str, want_pcsr: bool, device: torch.device, dtype: torch.dtype, memory_format: str,
                scale: int, gates: Sequence[GateSpec] = ()) -> torch.nn.Module:
    """A checkpoint of the expected kind, loaded as users get it (``pcsr_lightning.load``: its layout rule,
    the cost list computed in float32 before the cast to ``dtype``)."""
    model = load(path, device, dtype, memory_format)
    if model.is_pcsr != want_pcsr:
        raise ValueError(f"{path} is a {model.kind} checkpoint, expected {'pcsr' if want_pcsr else 'original'}")
    if want_pcsr:
        model.cost_list(scale)
        for gate in gates:  # before any timing, a model without what they need
            gate.check_model(model.network, scale)
    elif model.scale != scale:
        raise ValueError(f"the original network upscales x{model.scale}, the benchmark runs x{scale}")
    return model.network


@torch.no_grad()
def first_call(fn, hr: torch.Tensor, scale: int, device) -> tuple[float, object, float, float | None, float | None]:
    """The warm-up call: the memory it needs, its output, PSNR against the HR, heavy and skipped shares."""

    out = []
    peak = call_peak_mb(lambda: out.append(fn()), device)
    result = out[0]
    sr = result if isinstance(result, torch.Tensor) else result.sr
    share = None if isinstance(result, torch.Tensor) else result.heavy_share()
    skipped = None if isinstance(result, torch.Tensor) else result.skipped_share()
    return peak, result, psnr(sr[0].float().cpu(), hr, shave_for(scale)), share, skipped


@dataclass
class BenchRun:
    """One benchmark's pieces: its settings, both models and the (HR, LR) pair they run on."""

    settings: BenchSettings
    device: torch.device
    dtype: torch.dtype
    layout: str  # the memory format's name
    pcsr: torch.nn.Module
    original: torch.nn.Module
    hr: torch.Tensor
    lr: torch.Tensor
    workers: int  # the routed part's workers

    @property
    def ks(self) -> list[float]:
        return list(self.settings.ks)

    @property
    def fast_name(self) -> str:
        return f"pcsr k={self.ks[0]:g}"

    @property
    def ref_name(self) -> str:
        return f"reference k={self.ks[0]:g}"


def load_models(settings: BenchSettings, device: torch.device, dtype: torch.dtype) -> tuple[torch.nn.Module, ...]:
    """(PCSR, original) networks of the two checkpoints."""
    pcsr = bench_model(settings.pcsr_ckpt, True, device, dtype, settings.memory_format, settings.scale,
                       settings.gates)
    original = bench_model(settings.original_ckpt, False, device, dtype, settings.memory_format, settings.scale)
    return pcsr, original


def bench_input(settings: BenchSettings, device: torch.device, dtype: torch.dtype,
                memory_format: torch.memory_format) -> tuple[torch.Tensor, torch.Tensor]:
    """(HR (3,H,W) on the CPU, LR (1,3,h,w) on the device): the photo crop or the mosaic, downscaled."""
    h, w = settings.hr_size
    hr = photo_crop(settings.hr_image, (h, w)) if settings.hr_image else photo_mosaic((h, w))
    lr = as_input(downscale(hr, settings.scale).clamp(0, 1)[None].to(device, dtype), memory_format)
    return hr, lr


def prepare_run(settings: BenchSettings) -> BenchRun:
    """Check the settings, load both models and build their input."""
    settings.check()
    device = resolve_device(settings.device)
    dtype = DTYPES[settings.precision]
    memory_format = choose_memory_format(device, settings.memory_format)  # what pcsr upscale picks
    pcsr, original = load_models(settings, device, dtype)
    hr, lr = bench_input(settings, device, dtype, memory_format)
    return BenchRun(settings, device, dtype, format_name(memory_format), pcsr, original, hr, lr,
                    routed_threads(settings.routed_threads, device))


def describe(run: BenchRun) -> str:
    """The first log line: what is measured, on what."""
    (h, w), settings, lr, workers = run.settings.hr_size, run.settings, run.lr, run.workers
    return (f"bench x{settings.scale}: HR {h}x{w}, LR {lr.shape[-2]}x{lr.shape[-1]}, {run.device}, "
            f"{settings.precision}, {run.layout} (--memory-format {settings.memory_format}), "
            f"{torch.get_num_threads()} intra-op threads, routed part on "
            + (f"{workers} workers x 1 thread" if workers else "the intra-op threads (--routed-threads 0)"))


def plan_variants(run: BenchRun) -> dict[str, Callable[[], object]]:
    """Name -> call of every variant timed end to end: the original, PCSR per k (and per flat-tile gate
    setting), the all-heavy / all-light ends and the reference path."""
    settings, pcsr, original, lr, workers = run.settings, run.pcsr, run.original, run.lr, run.workers
    s, tile = settings.scale, settings.tile
    variants = {"original": lambda: original(lr)}
    for routing in settings.routes:
        variants[f"pcsr k={routing.k:g}"] = lambda r=routing: upscale(pcsr, lr, s, r, threads=workers)
        for gate in settings.gates:
            name = f"pcsr k={routing.k:g} skip={gate.threshold:g}"
            if gate.budget is not None:
                name += f" budget={gate.budget:g}"
            if len(settings.skip_halo) > 1:
                name += f" halo={'rf' if gate.halo is None else gate.halo}"
            variants[name] = lambda r=routing.with_gate(gate): upscale(pcsr, lr, s, r, threads=workers)
    for name, cls in (("pcsr all-heavy", 0), ("pcsr all-light", pcsr.num_classes - 1)) if settings.ends else ():
        variants[name] = lambda cls=cls: upscale_forced(pcsr, lr, s, cls, tile, threads=workers)
    if settings.reference and run.dtype == torch.float32:
        k0 = run.ks[0]
        variants[run.ref_name] = lambda: upscale_reference(pcsr, lr, s, k=k0)
    return variants


def warm_up(run: BenchRun, variants: dict[str, Callable[[], object]], log: Callable[[str], None],
            after_call: Callable[[], None] | None = None) -> tuple[dict[str, tuple], dict[str, object]]:
    """One call of each variant: name -> (peak MiB, PSNR, heavy share, skipped share), and the outputs of
    the fast and the reference path (compared later; the other outputs are dropped: memory at 8K)."""
    first, outputs = {}, {}
    for name, fn in variants.items():
        peak, result, quality, share, skipped = first_call(fn, run.hr, run.settings.scale, run.device)
        first[name] = (peak, quality, share, skipped)
        if name in (run.fast_name, run.ref_name):
            outputs[name] = result
        del result
        log(f"  {name}: warm-up done, {quality:.3f} dB")
        if after_call is not None:
            after_call()
    return first, outputs


def routed_part(run: BenchRun, feat: torch.Tensor) -> Callable[[], object]:
    """The fast path after the backbone, on given features."""

    def fast_routed():
        return upscale(run.pcsr, run.lr, run.settings.scale, run.settings.routes[0], feat=feat, threads=run.workers)

    return fast_routed


def timed_rounds(run: BenchRun, variants: dict[str, Callable[[], object]], stage: Stage | None = None
                 ) -> tuple[dict[str, list[float]], torch.Tensor]:
    """Milliseconds per round of every variant, of the backbone alone and (with the reference path) of the
    routed part alone; and the backbone's features of the LR."""
    settings, pcsr, lr, s = run.settings, run.pcsr, run.lr, run.settings.scale
    k0 = run.ks[0]
    repeats = {name: settings.reference_repeats if name == run.ref_name else settings.repeats for name in variants}
    repeats[BACKBONE] = settings.repeats

    def encode():
        return backbone_features(pcsr, lr, settings.tile)

    feat = encode()
    # The implementations differ only after the backbone: time that part alone, on the same features
    # (end-to-end minus backbone would carry the backbone's run-to-run noise into a small difference).
    routed = {}
    if run.ref_name in variants:
        routed = {ROUTED_FAST: routed_part(run, feat),
                  ROUTED_REFERENCE: lambda: upscale_reference(pcsr, lr, s, k=k0, feat=feat)}
        repeats.update({ROUTED_FAST: settings.repeats, ROUTED_REFERENCE: settings.reference_repeats})
    fns = {**variants, BACKBONE: encode, **routed}
    after_call = None if stage is None else stage("timing", sum(repeats[name] for name in fns))
    with torch.no_grad():
        times = time_rounds(fns, run.device, repeats, warmup=0, after_call=after_call)
    return times, feat


def measured_rows(variants: dict[str, Callable[[], object]], first: dict[str, tuple], times: dict[str, list[float]],
                  log: Callable[[str], None]) -> list[Row]:
    """A row per variant: its median time and what its warm-up call measured."""
    rows = []
    for name in variants:
        peak, quality, share, skipped = first[name]
        rows.append(Row(name, statistics.median_high(times[name]), quality, share, peak, times[name], skipped))
        log(f"  {name}: {rows[-1].ms:.1f} ms")
    log(f"  {BACKBONE}: {statistics.median_high(times[BACKBONE]):.1f} ms")
    return rows


def fast_vs_reference(run: BenchRun, outputs: dict[str, object], by_name: dict[str, Row],
                      times: dict[str, list[float]], feat: torch.Tensor) -> dict:
    """How the fast path's classes, PSNR and time compare with the reference path's."""
    fast, ref = outputs[run.fast_name], outputs[run.ref_name]
    s, k0 = run.settings.scale, run.ks[0]
    with torch.no_grad():
        probs = InferenceSession(run.pcsr, run.lr, s, feat=feat).prepared().probs
    return {
        "classes_identical": bool(torch.equal(fast.classes, ref.classes)),
        "class_map": class_map_agreement(fast.classes, ref.classes, probs, cost_list(run.pcsr, s), k0),
        "psnr_diff_db": abs(by_name[run.fast_name].psnr - by_name[run.ref_name].psnr),
        "speedup": paired_ratio(times[run.ref_name], times[run.fast_name]),
        "speedup_routed": paired_ratio(times[ROUTED_REFERENCE], times[ROUTED_FAST]),
        "ms_routed_fast": statistics.median_high(times[ROUTED_FAST]),
        "ms_routed_reference": statistics.median_high(times[ROUTED_REFERENCE]),
    }


def psnr_guard(run: BenchRun, fast_psnr: float) -> dict:
    """The low-precision fast path's PSNR against the same path in float32."""
    settings, s = run.settings, run.settings.scale
    full = bench_model(settings.pcsr_ckpt, True, run.device, torch.float32, settings.memory_format, s)
    with torch.no_grad():
        ref_sr = upscale(full, run.lr.float(), s, settings.routes[0], threads=run.workers).sr
    fp32_psnr = psnr(ref_sr[0].cpu(), run.hr, shave_for(s))
    return {"fp32": fp32_psnr, "low_precision": fast_psnr, "ok": fp32_psnr - fast_psnr <= GUARD_DB}


def report_header(run: BenchRun) -> dict:
    """The report's first entries: what was measured, on what."""
    settings = run.settings
    h, w = settings.hr_size
    return {"hr_size": [h, w], "scale": settings.scale, "device": str(run.device), "precision": settings.precision,
            "memory_format": run.layout, "k": run.ks, "machine": machine_info(run.device),
            "routed_threads": run.workers,
            "timing": "variants interleaved round by round; ratios are medians of same-round ratios",
            "receptive_radius": receptive_radius(run.pcsr.backbone)}


def run_bench(settings: BenchSettings, log: Callable[[str], None] = print, stage: Stage | None = None) -> dict:
    """Warm up and time every variant interleaved; the report ``pcsr bench`` prints and writes as JSON.
    ``stage(label, calls)``: progress, called as the warm-up and the timing start; returns what to call after
    each of their calls."""

    run = prepare_run(settings)
    log(describe(run))
    variants = plan_variants(run)
    first, outputs = warm_up(run, variants, log, None if stage is None else stage("warm-up", len(variants)))
    times, feat = timed_rounds(run, variants, stage)
    rows = measured_rows(variants, first, times, log)
    by_name = {r.name: r for r in rows}
    fast_row, reference, original = by_name[run.fast_name], by_name.get(run.ref_name), by_name["original"]
    report = report_header(run)
    if run.ref_name in variants:
        report["fast_vs_reference"] = fast_vs_reference(run, outputs, by_name, times, feat)
    if run.dtype != torch.float32:
        report["psnr_guard"] = psnr_guard(run, fast_row.psnr)
    report.update(
        ms_original=original.ms,
        ms_backbone=statistics.median_high(times[BACKBONE]),
        ms_pcsr=fast_row.ms,
        ratio_pcsr=paired_ratio(fast_row.times_ms, original.times_ms),
        ms_reference=None if reference is None else reference.ms,
        psnr={r.name: r.psnr for r in rows},
        psnr_original=original.psnr,
        psnr_pcsr=fast_row.psnr,
        psnr_reference=None if reference is None else reference.psnr,
        peak_memory_mb={r.name: r.peak_mb for r in rows},
        rows=[r.as_dict() for r in rows],
    )
    if settings.profile:
        with torch.no_grad():
            report["profile_routed"] = op_profile(routed_part(run, feat), run.device)
    return report
