"""How to route, said once: a frozen ``RoutingSpec`` (with its flat-tile gate part, ``GateSpec``) validated
where it is built.

Every entry point builds one: the CLI flags, ``pcsr-eval``'s ``eval`` node (``EvalSettings``), the bench,
the training callbacks and the Python API (``model(img, k=..., skip_tile=...)`` or ``model(img,
routing=spec)``). Each option has one check here, so a bad value gets the same message, naming the
field, wherever it comes from. The flat option names (``k``, ``skip_flat``, ``skip_tile``, ...) are the
CLI's and the API's; ``RoutingSpec.build`` turns them into the nested spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

from pcsr_lightning.inference.router import check_k

# The gate's LR tile: finer tiles skipped more at equal PSNR (16 vs 32 vs 64 on the development photos).
DEFAULT_TILE = 16
SCORERS = ("laplacian", "learned")  # what scores the tiles: the training-free |Laplacian| or the model's gate
FILLS = ("bicubic", "linear")  # what fills skipped tiles: bicubic, or the model's fitted LinearFill
FLAT_OPTIONS = ("k", "adaptive", "refine", "tile", "skip_flat", "skip_tile", "skip_halo", "skip_gate", "skip_fill",
                "skip_budget")
# With a loss budget and no threshold, the tiles scoring below this are the candidates the budget chooses
# from: above it the measured losses of a skipped tile were far beyond any budget (experiments/results/skip_flat.md).
BUDGET_CANDIDATES = 0.5


def _integer(value, name: str, minimum: int, rule: str) -> int:
    """An int >= ``minimum`` (or the text of one); a bool, a fraction or anything else is refused naming
    ``name`` and its ``rule``."""
    if isinstance(value, bool) or isinstance(value, float) and not value.is_integer():
        raise ValueError(f"{name} must be {rule}, got {value}")
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be {rule}, got {value}") from None
    if number < minimum:
        raise ValueError(f"{name} must be {rule}, got {value}")
    return number


def check_tile(value) -> int:
    """The backbone's LR tile (bounded memory on huge images, same result): 0 = the whole image."""
    return _integer(value, "tile", 0, "an integer >= 0 (LR pixels; 0 = the whole image)")


def _finite_at_least_zero(value, key: str, rule: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be {rule}, got {value}") from None
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{key} must be {rule}, got {number:g}")
    return number


def check_threshold(value) -> float:
    """The gate's threshold: finite and >= 0 (0 runs every tile, so the result is PCSR's)."""
    return _finite_at_least_zero(value, "skip_flat", "a finite number >= 0 (0 runs every tile)")


def check_budget(value) -> float | None:
    """The gate's loss budget in dB below PCSR: None (no budget: the threshold alone decides) or finite
    and >= 0 (0 runs every tile)."""
    if value is None:
        return None
    return _finite_at_least_zero(value, "skip_budget", "None or a finite number of dB >= 0 (0 runs every tile)")


def check_budget_scale(budget: float | None, scale: float | None) -> None:
    """The budget's calibration maps LR tiles to whole HR pixels: an integer scale."""
    if budget is not None and scale is not None and not float(scale).is_integer():
        raise ValueError(f"skip_budget needs an integer scale (its sampled tiles are whole HR pixels), got "
                         f"x{float(scale):g}: use skip_flat at this scale")


def check_gate_tile(value) -> int:
    """The gate's LR tile size, at least one pixel."""
    return _integer(value, "skip_tile", 1, "an integer >= 1 (LR pixels)")


def check_halo(value) -> int | None:
    """The backbone halo around the gate's active tiles: None = the receptive radius (exact features)."""
    if value is None:
        return None
    return _integer(value, "skip_halo", 0, "None (the receptive radius) or an integer >= 0 (LR pixels)")


def check_scorer(scorer: str, model=None) -> str:
    """``scorer`` is one of ``SCORERS``; ``learned`` needs a model holding a trained gate."""
    if scorer not in SCORERS:
        raise ValueError(f"the gate's scorer must be one of {list(SCORERS)}, got {scorer!r}")
    if scorer == "learned" and model is not None and getattr(model, "gate", None) is None:
        raise ValueError("the learned gate was asked for, but this model has none (PCSR.gate is None): train one "
                         "with the gate stage (model=pcsr_gated, e.g. experiment=gate_carn) or use the laplacian "
                         "scorer")
    return scorer


def check_fill(fill: str, model=None, scale: float | None = None) -> str:
    """``fill`` is one of ``FILLS``; ``linear`` needs a model holding a fitted fill for ``scale``."""
    if fill not in FILLS:
        raise ValueError(f"the gate's fill must be one of {list(FILLS)}, got {fill!r}")
    if fill == "linear" and model is not None:
        own = getattr(model, "fill", None)
        if own is None:
            raise ValueError("the linear fill was asked for, but this model has none (PCSR.fill is None): fit one "
                             "with `pcsr fit-fill MODEL PHOTOS --out FILE` or use the bicubic fill")
        if scale is not None and float(scale) != own.scale:
            raise ValueError(f"this model's linear fill was fitted for x{own.scale}, not x{scale:g}: fit one for "
                             f"x{scale:g} or use the bicubic fill")
    return fill


def check_gate(scorer: str, fill: str, model=None, scale: float | None = None) -> None:
    """The gate's scorer and fill (``check_scorer``, ``check_fill``); with ``model``, that it holds the
    learned gate or the fitted fill they ask for (before any image is read or timed)."""
    check_scorer(scorer, model)
    check_fill(fill, model, scale)


def _check_flag(value, name: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be true or false, got {value}")
    return value


@dataclass(frozen=True)
class GateSpec:
    """The flat-tile gate (``gate.py``): LR tiles of ``tile`` pixels scoring below ``threshold`` are skipped
    and filled; the backbone runs on the others with a ``halo`` (None: its receptive radius, exact).
    With a ``budget`` (dB below PCSR, ``budget.py``) the tiles below the threshold are only candidates:
    the gate skips as many of them, flattest first, as its calibration says the budget allows."""

    threshold: float
    tile: int = DEFAULT_TILE
    halo: int | None = None
    scorer: str = SCORERS[0]  # max |Laplacian|, or the model's ``learned`` gate
    fill: str = FILLS[0]  # bicubic, or the model's fitted ``linear`` fill
    budget: float | None = None  # the loss budget in dB below PCSR; None: the threshold alone decides

    def __post_init__(self):
        object.__setattr__(self, "threshold", check_threshold(self.threshold))
        object.__setattr__(self, "budget", check_budget(self.budget))
        object.__setattr__(self, "tile", check_gate_tile(self.tile))
        object.__setattr__(self, "halo", check_halo(self.halo))
        check_gate(self.scorer, self.fill)

    def check_model(self, model, scale: float | None = None) -> None:
        """That ``model`` holds the learned gate or the fitted fill (for ``scale``) this gate asks for, and
        that a budget's scale is an integer."""
        check_gate(self.scorer, self.fill, model, scale)
        check_budget_scale(self.budget, scale)


@dataclass(frozen=True)
class RoutingSpec:
    """How a PCSR model routes pixels (ignored by original networks): the cost knob ``k`` (or ADM with
    ``adaptive``), the refinement, the backbone's LR ``tile`` (0: whole image) and the flat-tile ``gate``
    (None: off)."""

    k: float = 0.0
    adaptive: bool = False
    refine: bool = True
    tile: int = 0
    gate: GateSpec | None = None

    def __post_init__(self):
        object.__setattr__(self, "k", check_k(self.k))
        _check_flag(self.adaptive, "adaptive")
        _check_flag(self.refine, "refine")
        object.__setattr__(self, "tile", check_tile(self.tile))
        if self.gate is not None and not isinstance(self.gate, GateSpec):
            raise ValueError(f"gate must be a GateSpec or None, got {type(self.gate).__name__}")

    @classmethod
    def build(cls, k: float = 0.0, adaptive: bool = False, refine: bool = True, tile: int = 0,
              skip_flat: float | None = None, skip_tile: int | None = None, skip_halo: int | None = None,
              skip_gate: str = GateSpec.scorer, skip_fill: str = GateSpec.fill, skip_budget: float | None = None
              ) -> RoutingSpec:
        """The spec from the flat option names of the CLI and the API; ``skip_flat`` and ``skip_budget``
        None: no gate (its other options are still checked); ``skip_budget`` alone: the candidates are the
        tiles below ``BUDGET_CANDIDATES``; ``skip_tile`` None: the gate's default tile."""
        budget = check_budget(skip_budget)
        threshold = BUDGET_CANDIDATES if skip_flat is None and budget is not None else skip_flat
        gate = GateSpec(0.0 if threshold is None else threshold, GateSpec.tile if skip_tile is None else skip_tile,
                        skip_halo, skip_gate, skip_fill, budget)
        return cls(k, adaptive, refine, tile, None if threshold is None else gate)

    @classmethod
    def of(cls, routing: RoutingSpec | None = None, **options) -> RoutingSpec:
        """``routing`` itself, or the spec the flat ``options`` build (``build``); not both."""
        unknown = sorted(set(options) - set(FLAT_OPTIONS))
        if unknown:
            raise TypeError(f"unknown routing option(s) {unknown}; expected some of {list(FLAT_OPTIONS)}")
        if routing is None:
            return cls.build(**options)
        if options:
            raise TypeError(f"give routing=... or the options {sorted(options)}, not both")
        if not isinstance(routing, RoutingSpec):
            raise TypeError(f"routing must be a RoutingSpec, got {type(routing).__name__}")
        return routing

    def with_k(self, k: float | None) -> RoutingSpec:
        """The same spec at cost knob ``k``; None: ADM (``adaptive``)."""
        return replace(self, k=0.0, adaptive=True) if k is None else replace(self, k=k, adaptive=False)

    def with_gate(self, gate: GateSpec | None) -> RoutingSpec:
        return replace(self, gate=gate)

    def flat(self) -> dict:
        """The flat option names and values (``build``'s arguments)."""
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "gate"}
        gate = self.gate or GateSpec(0.0)  # without a gate: its defaults, and no threshold
        out.update(skip_flat=None if self.gate is None else gate.threshold, skip_tile=gate.tile,
                   skip_halo=gate.halo, skip_gate=gate.scorer, skip_fill=gate.fill, skip_budget=gate.budget)
        return out

    def check_model(self, model, scale: float | None = None) -> None:
        """Before any image is read: the model holds what the gate asks for."""
        if self.gate is not None:
            self.gate.check_model(model, scale)
