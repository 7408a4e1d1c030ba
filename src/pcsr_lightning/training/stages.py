"""One LightningModule per kind of training stage. Each wraps a plain ``nn.Module`` (the network).

- ``OriginalStage``: the plain SR network, L1.
- ``BackboneStage`` (stage 0): PCSR with the heaviest upsampler U_0 alone, L1.
- ``UpsamplerStage`` (stage j >= 1): the soft mixture of U_0..U_j chosen by the classifier,
  weighted L1 + load-balance loss.
- ``RoutedUpsamplerStage`` (not in the paper): U_j alone after its stage, each pixel's L1 weighted by
  the frozen classifier's p_j, as routed inference will use it.
- ``RouterStage`` (not in the paper): the classifier alone, the upsamplers frozen, trained on the
  heavy-or-light decision routing makes with it (a cost-sensitive logistic loss on each pixel's gain).
- ``GateStage`` (not in the paper): the learned flat-tile gate alone, everything else frozen; its target,
  what PCSR adds over bicubic on each LR tile, is computed on the fly from the frozen network.

What a stage trains (``trains``, dotted paths in the network) and its loss weights come from the
pipeline in conf/model/; every other part is frozen (``requires_grad`` off and kept in eval mode).
The optimizer and scheduler arrive as Hydra ``_partial_`` factories and only ever see the trainable
parameters. Validation measures RGB PSNR, PSNR on Y and SSIM (``measure.metrics``) and averages them
with torchmetrics ``MeanMetric``s, which sum and count across DDP ranks; ``validation_step`` returns
the SR image (and the class map) so callbacks can log them without running the network again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric

from pcsr_lightning.data.datamodule import plain
from pcsr_lightning.inference.gate import tile_residuals
from pcsr_lightning.inference.session import InferenceSession, upscale
from pcsr_lightning.inference.spec import DEFAULT_TILE
from pcsr_lightning.measure.metrics import correlation, score, shave_for
from pcsr_lightning.models import PCSR, OriginalSR
from pcsr_lightning.models.mlp import MLP
from pcsr_lightning.models.parts import submodule
from pcsr_lightning.models.sampler import make_cell, make_coord
from pcsr_lightning.training.losses import classifier_stage_loss, l1_loss, routing_loss, weighted_l1_loss
from pcsr_lightning.training.revival import DeadUnits

VAL_METRICS = ("psnr", "psnr_y", "ssim")
PROGRESS_KEYS = ("val_psnr", "val_psnr_heavy", "val_psnr_k0")  # shown in the progress bar


def metric_keys(suffix: str = "") -> list[str]:
    """Validation keys of one output: ``val_psnr<suffix>``, ``val_psnr_y<suffix>``, ``val_ssim<suffix>``."""
    return [f"val_{m}{suffix}" for m in VAL_METRICS]


def scored(sr: torch.Tensor, hr: torch.Tensor, scale: float, suffix: str = "") -> dict[str, float]:
    return {f"val_{m}{suffix}": v for m, v in score(VAL_METRICS, sr, hr, shave_for(scale)).items()}


class NonFiniteTraining(RuntimeError):
    """A NaN or inf loss or gradient: training stops before the optimizer step would spread it into the
    weights, so the stage's last checkpoint keeps finite weights."""


def part_of(net: nn.Module, path: str, stage: str) -> nn.Module:
    """The submodule at a dotted ``path`` (``"upsamplers.1"``) that has parameters to train."""
    part = submodule(net, path, f"stage {stage}")
    if not any(True for _ in part.parameters()):
        raise ValueError(f"stage {stage} trains {path!r}, which has no parameters")
    return part


class Stage(L.LightningModule):
    """Common machinery: which submodules train, the optimizer over them, and logging."""

    def __init__(self, net: nn.Module, optimizer: Callable, scheduler: Callable | None = None,
                 name: str = "stage", scale: int = 4, trains: Sequence[str] = (),
                 lr_scale: Mapping[str, float] | None = None):
        super().__init__()
        # learning rate of a trained part relative to the optimizer's, e.g. {classifier: 0.33}
        self.lr_scale = {str(k): float(v) for k, v in (lr_scale or {}).items()}
        self.net = net
        self.optimizer_factory, self.scheduler_factory = optimizer, scheduler
        self.stage_name, self.scale = name, scale
        if not trains:
            raise ValueError(f"stage {name}: 'trains' names no part of the network to train")
        self.trains = [str(t) for t in trains]
        unknown = sorted(set(self.lr_scale) - set(self.trains))
        if unknown or any(not v > 0 for v in self.lr_scale.values()):
            raise ValueError(f"stage {name}: lr_scale must give positive factors for parts it trains "
                             f"({self.trains}), got {self.lr_scale}")
        trainable = [part_of(net, t, name) for t in self.trains]
        net.requires_grad_(False)
        for m in trainable:
            m.requires_grad_(True)
        self.frozen = [m for m in self.parts() if not any(p.requires_grad for p in m.parameters())]
        for m in self.frozen:
            m.eval()
        self.val_means = nn.ModuleDict({key: MeanMetric() for key in self.validation_keys()})

    def validation_keys(self) -> list[str]:
        """Every value ``validation_step`` logs (averaged over the validation images, all ranks)."""
        raise NotImplementedError

    def loss_settings(self) -> dict[str, float]:
        """The loss's settings, recorded in the manifest beside the stage's module."""
        return {"l1_weight": self.l1_weight}

    # -- what trains
    def parts(self) -> list[nn.Module]:
        """The network's separately trainable parts (those kept in eval mode when not trained)."""
        return [self.net]

    def trainable_modules(self) -> list[nn.Module]:
        return [submodule(self.net, t, f"stage {self.stage_name}") for t in self.trains]

    def trainable_names(self) -> list[str]:
        """Where the trainable parts sit in the network, e.g. ``["upsamplers.1", "classifier"]``."""
        return list(self.trains)

    def frozen_names(self) -> list[str]:
        names = {id(m): n for n, m in self.net.named_modules()}
        return [names[id(m)] for m in self.frozen]

    def train(self, mode: bool = True):
        """Lightning calls ``.train()`` after validation: frozen parts stay in eval mode."""
        super().train(mode)
        for m in self.frozen:
            m.eval()
        return self

    def parameter_counts(self) -> dict[str, int]:
        trainable = sum(p.numel() for p in self.net.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.net.parameters())
        return {"params_trainable": trainable, "params_frozen": total - trainable}

    def configure_optimizers(self):
        if self.lr_scale:  # one parameter group per trained part, its lr scaled before the scheduler starts
            groups = [{"params": [p for p in m.parameters() if p.requires_grad]} for m in self.trainable_modules()]
            optimizer = self.optimizer_factory(groups)
            for t, group in zip(self.trains, optimizer.param_groups):
                group["lr"] *= self.lr_scale.get(t, 1.0)
        else:
            optimizer = self.optimizer_factory([p for p in self.parameters() if p.requires_grad])
        if self.scheduler_factory is None:
            return optimizer
        # the name is the key LearningRateMonitor logs under: one learning-rate curve per stage
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": self.scheduler_factory(optimizer),
                                                         "interval": "step", "name": f"{self.stage_name}/lr"}}

    # -- stop at the first NaN or inf, before the optimizer step (cheaper than Lightning's detect_anomaly:
    # one reduction of the loss and one of the gradient norms per step)
    _bad_loss: float | None = None

    def on_before_backward(self, loss: torch.Tensor) -> None:
        if bool(torch.isfinite(loss.detach()).all()):
            return
        value = loss.detach().float().item()
        if self.trainer.world_size > 1:
            # Under DDP one process alone must not stop before the gradients' all-reduce (the others would
            # wait there): its NaN reaches every process's gradients, which all of them check below.
            self._bad_loss = value
            return
        raise NonFiniteTraining(f"stage {self.stage_name}: the training loss is {value} at step "
                                f"{self.global_step + 1}; stopped before that step changed any weight")

    def on_before_optimizer_step(self, optimizer) -> None:
        if str(getattr(self.trainer, "precision", "")).startswith("16"):
            return  # fp16's gradient scaler meets inf on purpose and skips those steps itself
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads and not bool(torch.isfinite(torch.nn.utils.get_total_norm(grads)).all()):
            bad = [n for n, p in self.net.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
            loss = "" if self._bad_loss is None else f" (this process's training loss was {self._bad_loss})"
            raise NonFiniteTraining(f"stage {self.stage_name}: non-finite gradients (NaN or inf) at step "
                                    f"{self.global_step + 1} in {bad[:4]}{' ...' if len(bad) > 4 else ''}{loss}; "
                                    "stopped before the optimizer step")

    def on_train_start(self) -> None:
        counts = {f"{self.stage_name}/{k}": float(v) for k, v in self.parameter_counts().items()}
        for logger in self.loggers:
            logger.log_metrics(counts, step=self.global_step)

    def log_stage(self, values: dict[str, torch.Tensor | float], batch_size: int, **kwargs) -> None:
        for key, value in values.items():
            self.log(f"{self.stage_name}/{key}", value, batch_size=batch_size, sync_dist=True, **kwargs)

    def log_validation(self, values: dict[str, float], tag: str = "") -> None:
        """One image's values into the means; Lightning logs each mean at the end of validation. With a
        ``tag`` (one of several validation scales, ``_x3``) into that scale's own means, and the plain keys
        are then the mean over the scales (``on_validation_epoch_end``)."""
        if tag:
            self.val_tags[tag] = None
            values = {f"{key}{tag}": value for key, value in values.items()}
            for key in values.keys() - self.val_means.keys():
                self.val_means[key] = MeanMetric().to(self.device)
        for key, value in values.items():
            mean = self.val_means[key]
            mean.update(torch.tensor(float(value), dtype=torch.float32, device=self.device))
            self.log(f"{self.stage_name}/{key}", mean, on_step=False, on_epoch=True, batch_size=1,
                     prog_bar=not tag and key in PROGRESS_KEYS, add_dataloader_idx=False,
                     metric_attribute=f"val_means.{key}")

    def on_validation_epoch_start(self) -> None:
        self.val_tags: dict[str, None] = {}  # the scales' tags met in this validation, in order

    def on_validation_epoch_end(self) -> None:
        """Several validation scales: each plain key is the mean of its per-scale means."""
        if not self.val_tags:
            return
        for key in self.validation_keys():
            means = [self.val_means[key + tag] for tag in self.val_tags if key + tag in self.val_means]
            if means:
                value = torch.stack([m.compute() for m in means]).mean()
                self.log(f"{self.stage_name}/{key}", value, batch_size=1, prog_bar=key in PROGRESS_KEYS)

    def val_scale(self, batch: dict) -> tuple[float, str]:
        """The scale of a validation batch and its metrics' tag: the stage's own scale, or the batch's when
        several scales are validated (``SRDataModule.val_scales``)."""
        if "tag" not in batch:
            return self.scale, ""
        return plain(float(batch["scale"][0])), batch["tag"][0]


class OriginalStage(Stage):
    """The plain network (``OriginalSR``) with L1 on whole HR crops."""

    def __init__(self, net: OriginalSR, optimizer: Callable, scheduler: Callable | None = None,
                 name: str = "original", scale: int = 4, trains: Sequence[str] = (), l1_weight: float = 1.0):
        if not isinstance(net, OriginalSR):
            raise TypeError(f"OriginalStage trains an OriginalSR, got {type(net).__name__}")
        super().__init__(net, optimizer, scheduler, name, scale, trains)
        self.l1_weight = float(l1_weight)

    def parts(self) -> list[nn.Module]:
        return [self.net.network]

    def validation_keys(self) -> list[str]:
        return metric_keys()

    def training_step(self, batch, batch_idx):
        loss = self.l1_weight * l1_loss(self.net(batch["lr"]), batch["hr"])
        self.log_stage({"train_loss": loss}, batch["lr"].shape[0], prog_bar=True)
        return loss

    best_metric = "val_psnr"  # what the best-by-validation checkpoint keeps the maximum of

    def validation_step(self, batch, batch_idx):
        sr = self.net(batch["lr"])
        self.log_validation(scored(sr[0], batch["hr"][0], self.scale))
        return {"sr": sr, "classes": None}


def queries_of(batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Coordinates, cells and target colours of the batch's query pixels: (B,Q,2), (B,Q,2), (B,Q,3).
    Crops of a scale range bring their own (each crop's cell from its own HR size)."""
    if "coord" in batch:
        return batch["coord"], batch["cell"], batch["target"]
    hr, idx = batch["hr"], batch["idx"]
    b, _, h, w = hr.shape
    coord = make_coord((h, w), hr.device)[idx]
    cell = make_cell((h, w), idx.numel(), hr.device).view(b, -1, 2)
    target = hr.flatten(2).transpose(1, 2).gather(1, idx.unsqueeze(-1).expand(-1, -1, 3))
    return coord, cell, target


class PCSRStage(Stage):
    """Stages of a PCSR network: ``num_active`` upsamplers take part in the soft mixture.

    ``revive_every`` > 0: every that many steps, the hidden units of the trained MLPs that were never
    active since the last check are drawn again (``revival.DeadUnits``); 0 leaves them dead.
    """

    def __init__(self, net: PCSR, optimizer: Callable, scheduler: Callable | None = None, name: str = "stage",
                 scale: int = 4, index: int = 0, trains: Sequence[str] = (),
                 lr_scale: Mapping[str, float] | None = None, revive_every: int = 0):
        if not isinstance(net, PCSR):
            raise TypeError(f"{type(self).__name__} trains a PCSR network, got {type(net).__name__}")
        if not 0 <= index < net.num_classes:
            raise ValueError(f"stage {index} does not exist for a PCSR with M={net.num_classes} upsamplers")
        if int(revive_every) < 0:
            raise ValueError(f"revive_every is a number of steps (0: never), got {revive_every}")
        self.index = index
        super().__init__(net, optimizer, scheduler, name, scale, trains, lr_scale)
        self.revive_every = int(revive_every)
        self.dead_units: DeadUnits | None = None

    def on_train_start(self) -> None:
        super().on_train_start()
        if self.revive_every:
            mlps = [m for part in self.trainable_modules() for m in part.modules() if isinstance(m, MLP)]
            self.dead_units = DeadUnits(mlps, self.revive_every)

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        if self.dead_units is not None and self.dead_units.step(self.trainer.optimizers[0]):
            self.log_stage({"revived": float(self.dead_units.revived)}, 1)

    def on_train_end(self) -> None:
        if self.dead_units is not None:
            self.dead_units.remove()
            self.dead_units = None

    @property
    def num_active(self) -> int:
        return self.index + 1

    def parts(self) -> list[nn.Module]:
        parts = [self.net.backbone, *self.net.upsamplers]
        return parts + ([self.net.classifier] if self.net.classifier is not None else [])

    @property
    def routes(self) -> bool:
        """Once every upsampler is trained, validation also measures routed inference at k = 0."""
        return self.num_active == self.net.num_classes and self.net.num_classes > 1

    def validation_keys(self) -> list[str]:
        keys = metric_keys("_heavy")
        return keys + metric_keys("_k0") + ["val_heavy_share_k0"] if self.routes else keys

    @property
    def best_metric(self) -> str:
        """What ``best.ckpt`` keeps the maximum of: routed PSNR at k = 0 once it is measured, else U_0's."""
        return "val_psnr_k0" if self.routes else "val_psnr_heavy"

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        lr, hr = batch["lr"], batch["hr"][0]
        scale, tag = self.val_scale(batch)
        session = InferenceSession(self.net, lr, scale)  # backbone and classifier once for both outputs
        heavy = session.forced(0)
        values = scored(heavy.sr[0], hr, scale, "_heavy")
        out = {"sr": heavy.sr, "classes": None}
        if self.routes:
            routed = session.run()
            values.update(scored(routed.sr[0], hr, scale, "_k0"), val_heavy_share_k0=routed.heavy_share())
            out = {"sr": routed.sr, "classes": routed.classes}
        self.log_validation(values, tag)
        return out


class BackboneStage(PCSRStage):
    """Stage 0: U_0 alone on the backbone's features, L1 only (the classifier is not used yet)."""

    def __init__(self, net: PCSR, optimizer: Callable, scheduler: Callable | None = None, name: str = "stage0",
                 scale: int = 4, trains: Sequence[str] = (), l1_weight: float = 1.0):
        super().__init__(net, optimizer, scheduler, name, scale, index=0, trains=trains)
        self.l1_weight = float(l1_weight)

    def training_step(self, batch, batch_idx):
        coord, cell, target = queries_of(batch)
        pred, _ = self.net(batch["lr"], coord, cell, num_active=1)
        loss = self.l1_weight * l1_loss(pred, target)
        self.log_stage({"train_loss": loss}, coord.shape[0], prog_bar=True)
        return loss


class UpsamplerStage(PCSRStage):
    """Stage j >= 1: the soft mixture of j + 1 active upsamplers, l1_weight * L1 + average_weight * L_avg."""

    def __init__(self, net: PCSR, optimizer: Callable, scheduler: Callable | None = None, name: str | None = None,
                 scale: int = 4, index: int = 1, trains: Sequence[str] = (), l1_weight: float = 1.0,
                 average_weight: float = 0.0, lr_scale: Mapping[str, float] | None = None, revive_every: int = 0):
        if index < 1:
            raise ValueError("UpsamplerStage trains U_j for j >= 1 (stage 0 is BackboneStage)")
        super().__init__(net, optimizer, scheduler, name or f"stage{index}", scale, index=index, trains=trains,
                         lr_scale=lr_scale, revive_every=revive_every)
        self.l1_weight, self.average_weight = float(l1_weight), float(average_weight)

    def loss_settings(self) -> dict[str, float]:
        return {"l1_weight": self.l1_weight, "average_weight": self.average_weight, "revive_every": self.revive_every}

    def training_step(self, batch, batch_idx):
        coord, cell, target = queries_of(batch)
        pred, probs = self.net(batch["lr"], coord, cell, num_active=self.num_active)
        losses = classifier_stage_loss(pred, target, probs, self.l1_weight, self.average_weight)
        heavy = probs[..., 0].mean()
        self.log_stage({"train_loss": losses["loss"], "train_l1": losses["l1"], "train_average": losses["average"],
                        "train_p_heavy": heavy}, coord.shape[0], prog_bar=True)
        return losses["loss"]


class RoutedUpsamplerStage(PCSRStage):
    """U_j alone with the classifier frozen: L1 of U_j's own output, each pixel weighted by p_j.

    The soft mixture trains U_j to complete a blend (p_0 U_0 + p_1 U_1), but routed inference uses U_j
    alone on the pixels the classifier gives it. This stage trains it that way, after the paper's stage
    j has trained the classifier; U_0..U_{j-1} do not run, so its steps are cheaper than the mixture's.
    ``skip_hardest`` leaves out that fraction of each batch's pixels, those with the lowest p_j: as k
    falls they are the first to go to a heavier upsampler, and U_j's few weights serve the others better.
    ``p_power`` bends the weights to p_j ** p_power: 1 follows the classifier; 0 weighs every pixel alike,
    which is what U_j meets when routing sends it everything (the all-light end).
    ``teacher_weight`` > 0 adds the same weighted L1 to the frozen heavy upsampler U_0's output on the same
    queries (distillation): a target a light upsampler can approach, without the noise of the photos that
    no upsampler can predict; the loss is then (l1_weight * L1(GT) + teacher_weight * L1(U_0)).
    """

    def __init__(self, net: PCSR, optimizer: Callable, scheduler: Callable | None = None, name: str | None = None,
                 scale: int = 4, index: int = 1, trains: Sequence[str] = (), l1_weight: float = 1.0,
                 skip_hardest: float = 0.0, p_power: float = 1.0, lr_scale: Mapping[str, float] | None = None,
                 teacher_weight: float = 0.0, revive_every: int = 0):
        if index < 1:
            raise ValueError("RoutedUpsamplerStage trains U_j for j >= 1: it needs a trained classifier")
        if any(t == "classifier" or t.startswith("classifier.") for t in trains):
            raise ValueError("RoutedUpsamplerStage weights the loss by the classifier's probabilities, so the "
                             f"classifier must stay frozen; trains={list(trains)}")
        if not 0.0 <= skip_hardest < 1.0:
            raise ValueError(f"skip_hardest is the fraction of pixels left out, in [0, 1); got {skip_hardest}")
        if not 0.0 <= p_power <= 4.0:
            raise ValueError(f"p_power is the exponent of the pixel weights p_j ** p_power, in [0, 4]; got {p_power}")
        if not float(teacher_weight) >= 0.0:
            raise ValueError(f"teacher_weight weighs the L1 to U_0's output, >= 0; got {teacher_weight}")
        if float(teacher_weight) > 0 and any(t == "upsamplers.0" or t.startswith("upsamplers.0.") for t in trains):
            raise ValueError(f"teacher_weight > 0 distils the frozen U_0 into U_{index}: U_0 must not train; "
                             f"trains={list(trains)}")
        super().__init__(net, optimizer, scheduler, name or f"stage{index}_routed", scale, index=index,
                         trains=trains, lr_scale=lr_scale, revive_every=revive_every)
        self.l1_weight, self.skip_hardest, self.p_power = float(l1_weight), float(skip_hardest), float(p_power)
        self.teacher_weight = float(teacher_weight)

    def loss_settings(self) -> dict[str, float]:
        return {"l1_weight": self.l1_weight, "skip_hardest": self.skip_hardest, "p_power": self.p_power,
                "teacher_weight": self.teacher_weight, "revive_every": self.revive_every}

    def pixel_weights(self, probs: torch.Tensor) -> torch.Tensor:
        """p_j ** p_power, and 0 for the ``skip_hardest`` fraction of pixels with the lowest p_j."""
        p = probs[..., self.index].detach()
        weights = p if self.p_power == 1.0 else p.pow(self.p_power)
        skipped = int(self.skip_hardest * p.numel())
        if skipped == 0:
            return weights
        threshold = p.flatten().kthvalue(skipped).values
        return torch.where(p > threshold, weights, torch.zeros_like(p))

    def training_step(self, batch, batch_idx):
        coord, cell, target = queries_of(batch)
        # PCSR.alone, with the backbone's query inputs kept for the teacher: encoded once per step
        inputs, base = self.net.query(batch["lr"], coord, cell)
        probs = self.net.class_probabilities(inputs, self.num_active)
        pred = self.net.upsamplers[self.index](inputs) + base
        weights = self.pixel_weights(probs)
        loss = self.l1_weight * weighted_l1_loss(pred, target, weights)
        if self.teacher_weight > 0:
            with torch.no_grad():
                teacher = self.net.upsamplers[0](inputs) + base
            loss = loss + self.teacher_weight * weighted_l1_loss(pred, teacher, weights)
        self.log_stage({"train_loss": loss, f"train_p{self.index}": probs[..., self.index].mean()}, coord.shape[0],
                       prog_bar=True)
        return loss


class RouterStage(PCSRStage):
    """The classifier of a two-upsampler PCSR alone, trained for the decision routing makes with it.

    The paper's stage trains the classifier inside the soft mixture, where a blend of U_0 and U_1 can
    beat either; routing then sends each pixel to one of them. After U_1 has changed (its routed stage),
    this stage fits the classifier to what each pixel gains on U_0: e_1 - e_0, the squared errors of the
    frozen upsamplers' outputs (clamped to the image range, mean over RGB), with ``routing_loss`` labelling
    the batch's top ``heavy_share`` of gains heavy. ``relative``: each gain is divided by its crop's mean
    e_1, so a pixel counts by the PSNR it buys its image rather than by its squared error (mean PSNR over
    images rewards a gain in a clean image more than the same gain in a busy one).
    """

    def __init__(self, net: PCSR, optimizer: Callable, scheduler: Callable | None = None, name: str | None = None,
                 scale: int = 4, index: int = 1, trains: Sequence[str] = ("classifier",), heavy_share: float = 0.06,
                 relative: bool = True, lr_scale: Mapping[str, float] | None = None):
        if list(trains) != ["classifier"]:
            raise ValueError(f"RouterStage trains the classifier alone, the upsamplers frozen; trains={list(trains)}")
        if not 0.0 < heavy_share < 1.0:
            raise ValueError(f"heavy_share is the share of each batch's pixels labelled heavy, in (0, 1); "
                             f"got {heavy_share}")
        super().__init__(net, optimizer, scheduler, name or f"stage{index}_router", scale, index=index,
                         trains=trains, lr_scale=lr_scale)
        if net.num_classes != 2 or index != 1:
            raise ValueError("RouterStage trains the heavy-or-light decision of a PCSR with two upsamplers "
                             f"(index 1); got M={net.num_classes}, index={index}")
        self.heavy_share, self.relative = float(heavy_share), bool(relative)

    def loss_settings(self) -> dict[str, float]:
        return {"heavy_share": self.heavy_share, "relative": float(self.relative)}

    def training_step(self, batch, batch_idx):
        coord, cell, target = queries_of(batch)
        inputs, base = self.net.query(batch["lr"], coord, cell)
        with torch.no_grad():
            e0, e1 = ((self.net.upsamplers[c](inputs) + base).clamp(0, 1).sub(target).pow(2).mean(-1) for c in (0, 1))
            gain = e1 - e0
            if self.relative:
                gain = gain / e1.mean(-1, keepdim=True).clamp_min(1e-12)
        logits = self.net.classifier(inputs)
        score = logits[..., 0] - logits[..., 1]
        loss = routing_loss(score, gain, self.heavy_share)
        self.log_stage({"train_loss": loss, "train_p_heavy": torch.sigmoid(score).mean()}, coord.shape[0],
                       prog_bar=True)
        return loss


class GateStage(Stage):
    """The learned flat-tile gate (``PCSR.gate``, ``models.gate.LearnedGate``) alone, the rest frozen.

    Its target on each LR crop: the frozen PCSR's routed output at cost knob ``k`` minus the bicubic
    upscale of the crop, root mean square over each ``tile`` x ``tile`` LR tile's HR pixels
    (``gate.tile_residuals``): what the flat-tile gate loses by filling that tile with bicubic. The gate
    predicts its log (``eps`` keeps exact zeros finite) and trains on the L1 distance in log space, so
    flat and busy tiles weigh alike. Crops should hold several tiles and their context (``data.lr_patch``
    of 64 LR pixels: 16 tiles of 16).

    The frozen network's routed pass costs far more than the gate's step: with ``buffer`` > 0 the last
    ``buffer`` crops and their targets are kept, targets are computed for every ``fresh_every``-th batch
    only (the others are dropped), and each step trains on all the kept crops. Validation: the same
    distance and the correlation of predicted and true log residuals on the validation images
    (``best.ckpt`` keeps the highest correlation).
    """

    best_metric = "val_gate_corr"

    def __init__(self, net: PCSR, optimizer: Callable, scheduler: Callable | None = None, name: str = "gate",
                 scale: int = 4, trains: Sequence[str] = ("gate",), tile: int = DEFAULT_TILE, k: float = 0.0,
                 eps: float = 1.0e-4, buffer: int = 0, fresh_every: int = 1):
        if not isinstance(net, PCSR):
            raise TypeError(f"GateStage trains a PCSR network's gate, got {type(net).__name__}")
        if getattr(net, "gate", None) is None:
            raise ValueError("GateStage trains PCSR.gate, but this network has none: build it with a gate "
                             "(model=pcsr_gated sets model.net.gate)")
        if [str(t) for t in trains] != ["gate"]:
            raise ValueError(f"GateStage trains the gate alone (trains: [gate]), got {list(trains)}")
        if int(tile) < 1 or not float(eps) > 0 or int(buffer) < 0 or int(fresh_every) < 1:
            raise ValueError(f"GateStage needs tile >= 1, eps > 0, buffer >= 0 and fresh_every >= 1, got tile={tile}, "
                             f"eps={eps}, buffer={buffer}, fresh_every={fresh_every}")
        if int(fresh_every) > 1 and int(buffer) == 0:
            raise ValueError("GateStage: fresh_every > 1 trains on kept crops between fresh ones; give buffer > 0")
        super().__init__(net, optimizer, scheduler, name, scale, trains)
        self.tile, self.k, self.eps = int(tile), float(k), float(eps)
        self.buffer, self.fresh_every = int(buffer), int(fresh_every)
        self.kept: list[tuple[torch.Tensor, torch.Tensor]] = []  # (LR crop, its target), newest last
        self.batches_seen = 0

    def parts(self) -> list[nn.Module]:
        parts = [self.net.backbone, *self.net.upsamplers, self.net.gate]
        return parts + ([self.net.classifier] if self.net.classifier is not None else [])

    def validation_keys(self) -> list[str]:
        return ["val_gate_l1", "val_gate_corr"]

    def loss_settings(self) -> dict[str, float]:
        return {"tile": self.tile, "k": self.k, "eps": self.eps, "buffer": self.buffer, "fresh_every": self.fresh_every}

    def targets(self, lr: torch.Tensor) -> tuple[torch.Tensor, object]:
        """(B, ty, tx) log residuals of the frozen PCSR over bicubic per tile, and the routed result."""
        with torch.no_grad():
            out = upscale(self.net, lr, self.scale, k=self.k)
            cheap = F.interpolate(lr.float(), size=out.sr.shape[-2:], mode="bicubic", align_corners=False)
            residual = tile_residuals(out.sr, cheap, tuple(lr.shape[-2:]), self.tile)
        return torch.log(residual + self.eps), out

    def predict(self, lr: torch.Tensor) -> torch.Tensor:
        return self.net.gate(self.net.normalize(lr), self.tile).float()

    def training_step(self, batch, batch_idx):
        lr = batch["lr"]
        if not self.buffer:
            target, _ = self.targets(lr)
        else:
            if self.batches_seen % self.fresh_every == 0 or not self.kept:
                fresh, _ = self.targets(lr)
                self.kept += list(zip(lr.detach(), fresh))
                del self.kept[: max(0, len(self.kept) - self.buffer)]
            lr = torch.stack([x for x, _ in self.kept])
            target = torch.stack([t for _, t in self.kept])
        self.batches_seen += 1
        loss = (self.predict(lr) - target).abs().mean()
        self.log_stage({"train_loss": loss}, lr.shape[0], prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx):
        target, out = self.targets(batch["lr"])
        pred = self.predict(batch["lr"]).detach()
        self.log_validation({"val_gate_l1": float((pred - target).abs().mean()),
                             "val_gate_corr": correlation(pred, target)})
        return {"sr": out.sr, "classes": out.classes}
