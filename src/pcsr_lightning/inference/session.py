"""An inference session: one image prepared once, then routed and rendered per k and per gate setting.

The backbone and the classifier do not depend on k, so a k sweep runs them once (``routed.prepare``)
and only routes and renders again; a flat-tile gate setting changes which tiles run the backbone, so
it prepares once per gate. ``pcsr eval``, ``pcsr bench``, ``pcsr flops``, the training callbacks and
``SRModel`` all go through a session instead of driving those steps themselves.

The session keeps one prepared image at a time (the last gate setting asked for): at 8K the features
and probabilities of two settings would not fit beside each other on a small machine.
"""

from __future__ import annotations

import torch

from pcsr_lightning.inference.budget import plan_budget
from pcsr_lightning.inference.gate import SkipPlan, plan_skip
from pcsr_lightning.inference.kernels import CLASSIFIER_BAND_QUERIES
from pcsr_lightning.inference.routed import (
    Prepared,
    RoutedSR,
    backbone_features,
    exact,
    forced_classes,
    prepare,
    render,
    route,
)
from pcsr_lightning.inference.spec import GateSpec, RoutingSpec


class InferenceSession:
    """``model`` (a PCSR network) on ``lr`` (B,3,h,w) at ``scale``. ``threads``: the routed part's workers
    (``workers.routed_threads``); ``max_queries``: the band and block size (None: the cache-sized
    default); ``feat``: the backbone's features, when the caller already has them (ungated only)."""

    def __init__(self, model, lr: torch.Tensor, scale: float, threads: int | None = None,
                 max_queries: int | None = None, feat: torch.Tensor | None = None):
        self.model, self.lr, self.scale = model, lr, float(scale)
        self.threads, self.max_queries = threads, max_queries
        self._given_feat = feat
        self._gate: GateSpec | None = None  # the gate setting ``_prepared`` was prepared under
        self._k: float | None = None  # and the k a loss budget calibrated against (None without a budget)
        self._prepared: Prepared | None = None

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @exact
    def plan(self, gate: GateSpec, k: float = 0.0) -> SkipPlan:
        """The gate's plan for this image (which tiles run, the backbone's windows); with a loss budget,
        calibrated against PCSR at ``k`` (``budget.plan_budget``)."""
        gate.check_model(self.model, self.scale)
        if gate.budget is not None:
            return plan_budget(self.model, self.lr, self.scale, gate, k, self.threads)
        return plan_skip(self.model, self.lr, self.scale, gate.threshold, gate.tile, gate.halo, scorer=gate.scorer,
                         fill=gate.fill)

    def prepared(self, gate: GateSpec | None = None, tile: int = 0, k: float | None = None) -> Prepared:
        """Features and class probabilities under ``gate`` (None: every tile runs); ``tile``: the backbone's
        LR tile when it has to run (the features are the same either way); ``k``: what a gate's loss budget
        calibrates against (None: the k it was prepared for, else 0)."""
        budget_k = None if gate is None or gate.budget is None else k
        if self._prepared is not None and self._gate == gate and (budget_k is None or budget_k == self._k):
            return self._prepared
        self.release()
        if gate is not None and self._given_feat is not None:
            raise ValueError("features given to a session are the whole image's: they cannot serve a gate")
        plan = None if gate is None else self.plan(gate, budget_k or 0.0)
        feat = self._given_feat if gate is None and self._given_feat is not None else \
            backbone_features(self.model, self.lr, tile, plan, self.threads)
        self._prepared = prepare(self.model, self.lr, self.scale, self.max_queries or CLASSIFIER_BAND_QUERIES, feat,
                                 self.threads, plan)
        self._gate, self._k = gate, None if gate is None or gate.budget is None else budget_k or 0.0
        return self._prepared

    def release(self) -> None:
        """Drop the prepared image (its features and probabilities)."""
        self._gate, self._k, self._prepared = None, None, None

    def classes(self, routing: RoutingSpec = RoutingSpec()) -> torch.Tensor:
        """(B,H*W) classes under ``routing``: 0 = the heaviest upsampler, M = skipped by the gate."""
        prepared = self.prepared(routing.gate, routing.tile, 0.0 if routing.adaptive else routing.k)
        return route(self.model, prepared, routing.k, routing.adaptive, self.threads)

    def render(self, classes: torch.Tensor, refine: bool = True, gate: GateSpec | None = None) -> RoutedSR:
        """Each upsampler on the pixels ``classes`` send to it, the base added, refinement."""
        return render(self.model, self.prepared(gate), classes, refine, self.max_queries, self.threads)

    def run(self, routing: RoutingSpec = RoutingSpec()) -> RoutedSR:
        """The routed result under ``routing``."""
        return self.render(self.classes(routing), routing.refine, routing.gate)

    def forced(self, cls: int, refine: bool = True, gate: GateSpec | None = None, tile: int = 0) -> RoutedSR:
        """Every pixel on upsampler ``cls`` (0 = all-heavy, M - 1 = all-light): the two ends of the k curve;
        the gate's skipped pixels keep class M."""
        return self.render(forced_classes(self.prepared(gate, tile), cls), refine, gate)


def upscale(model, lr: torch.Tensor, scale: float, routing: RoutingSpec | None = None, *,
            max_queries: int | None = None, feat: torch.Tensor | None = None, threads: int | None = None,
            **options) -> RoutedSR:
    """Fast routed inference of one batch from scratch, under ``routing`` or the flat ``options`` that build
    one (``RoutingSpec.of``: ``k``, ``adaptive``, ``refine``, ``tile``, ``skip_flat``, ``skip_tile``,
    ``skip_halo``, ``skip_gate``, ``skip_fill``, ``skip_budget``). ``feat``: the backbone's features to reuse (no gate);
    ``threads``: the routed part's workers (``workers.routed_threads``: None reads
    ``$PCSR_ROUTED_THREADS``, else its default; 0 splits each operator over the intra-op threads)."""
    spec = RoutingSpec.of(routing, **options)
    return InferenceSession(model, lr, scale, threads, max_queries, feat).run(spec)


def upscale_forced(model, lr: torch.Tensor, scale: float, cls: int, tile: int = 0,
                   threads: int | None = None) -> RoutedSR:
    """Every pixel on upsampler ``cls``, from scratch; the classifier still runs, so timings compare with
    routed runs."""
    return InferenceSession(model, lr, scale, threads).forced(cls, tile=tile)
