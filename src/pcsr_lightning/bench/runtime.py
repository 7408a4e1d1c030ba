"""ONNX Runtime beside the PyTorch path, timed in paired rounds in one process (``pcsr bench-runtime``).

Each model (a PCSR and its original network) is exported to ONNX, then every round runs, back to back on
the same LR image, the PyTorch path ``pcsr upscale`` takes (``SRModel.super_resolve``: for PCSR the
routed path) and the ONNX file in ONNX Runtime. The ratio of a round's two times cancels the drift a
shared machine puts into both; the report gives the median of the rounds' ratios. It also says what
ONNX Runtime's optimiser made of the graph (operators before and after, from its optimized model) and,
with ``profile``, where a run of the routed graph spends its time per operator.

ONNX Runtime's threads spin when idle by default; here they do not (``session.intra_op.allow_spinning``
0): in one process, spinning threads left over from a run slow down the PyTorch call after it.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from pcsr_lightning.bench.inputs import photo_crop
from pcsr_lightning.bench.timing import machine_info, paired_ratio, time_rounds
from pcsr_lightning.data.bicubic import downscale
from pcsr_lightning.export.exporter import ExportSpec, export_model
from pcsr_lightning.export.runtime import (
    onnxruntime,
    onnxruntime_version,
    op_counts,
    pixel_agreement,
    require_onnxruntime,
    run_onnx,
    session,
)
from pcsr_lightning.inference.router import heavy_share
from pcsr_lightning.inference.spec import RoutingSpec
from pcsr_lightning.inference.srmodel import load

RUNTIMES = ("pytorch", "onnxruntime")


@dataclass(frozen=True)
class RuntimeBenchSettings:
    pcsr_ckpt: str
    original_ckpt: str
    hr_image: str
    hr_size: tuple[int, int]
    scale: int = 4
    k: float = 0.0
    rounds: int = 5
    threads: int = 2  # torch's intra-op threads and ONNX Runtime's, the same for both
    graph: str = "routed"
    profile: bool = False

    def check(self) -> None:
        if self.rounds < 1:
            raise ValueError(f"--rounds must be >= 1, got {self.rounds}")
        if self.threads < 1:
            raise ValueError(f"--threads must be >= 1, got {self.threads}")
        if any(s % self.scale for s in self.hr_size):
            raise ValueError(f"--hr-size {self.hr_size[0]}x{self.hr_size[1]} must be a multiple of the scale "
                             f"{self.scale} on both sides")


def photo_lr(path: str, hr_size: tuple[int, int], scale: int) -> torch.Tensor:
    """(1,3,h,w): the bicubic LR of the photo's centre crop of ``hr_size`` (a smaller photo is refused)."""
    return downscale(photo_crop(path, hr_size), scale)[None]


def node_profile(path: Path, lr: torch.Tensor, threads: int, top: int = 12) -> dict:
    """One profiled ONNX Runtime run after a warm-up run: milliseconds per operator type (kernel time),
    largest first."""
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix("")) + "-profile"
    sess = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    run_onnx(sess, lr)
    run_onnx(sess, lr)
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    last = max((e for e in events if e.get("name") == "model_run"), key=lambda e: e["ts"])
    per_op: dict[str, float] = {}
    for event in events:
        if (event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time")
                and last["ts"] <= event["ts"] <= last["ts"] + last["dur"]):
            op = event.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + event.get("dur", 0) / 1000
    total = sum(per_op.values())
    ops = sorted(per_op.items(), key=lambda kv: -kv[1])[:top]
    return {"total_ms": total, "run_ms": last["dur"] / 1000,
            "ops": [{"op": op, "ms": ms, "share": ms / total if total else 0.0} for op, ms in ops]}


@dataclass
class ModelTimes:
    name: str
    ms: dict[str, float]  # median per runtime
    times_ms: dict[str, list[float]]
    ratio: float  # onnxruntime / pytorch, median of the paired rounds
    agreement: dict[str, float]  # ONNX Runtime's SR against PyTorch's, 8-bit levels
    ops: dict[str, int]  # the exported graph's operators
    optimized_ops: dict[str, int]  # after ONNX Runtime's graph optimisations (ORT_ENABLE_ALL)
    heavy_share: float | None = None
    profile: dict | None = None


def machine() -> dict:
    """``bench.timing.machine_info`` with ONNX Runtime's version and the load average (the cores are shared)."""
    info = {**machine_info(torch.device("cpu")), "onnxruntime": onnxruntime_version()}
    try:
        info["load_average"] = list(os.getloadavg())
    except OSError:
        pass
    return info


def bench_runtimes(settings: RuntimeBenchSettings, log: Callable[[str], None] = print) -> dict:
    """Export both models, then time PyTorch and ONNX Runtime on the same LR image, all four variants in
    each round (PCSR and the original in both runtimes), so every ratio between them is a paired one."""
    settings.check()
    require_onnxruntime()
    torch.set_num_threads(settings.threads)
    lr = photo_lr(settings.hr_image, settings.hr_size, settings.scale)
    load_before = machine().get("load_average")
    variants: dict[str, Callable[[], object]] = {}
    outputs: dict[str, object] = {}
    parts = {}
    with tempfile.TemporaryDirectory(prefix="pcsr-bench-runtime-") as tmp:
        for name, ckpt in (("pcsr", settings.pcsr_ckpt), ("original", settings.original_ckpt)):
            model = load(ckpt, "cpu")
            if model.is_pcsr != (name == "pcsr"):
                which = "--pcsr-ckpt" if name == "pcsr" else "--original-ckpt"
                raise ValueError(f"{which} {ckpt} holds a {model.kind} model")
            onnx_path = Path(tmp) / f"{name}.onnx"
            log(f"exporting {ckpt} to ONNX ...")
            export_model(ckpt, onnx_path, "onnx", ExportSpec(scale=settings.scale, k=settings.k, graph=settings.graph))
            optimized = Path(tmp) / f"{name}.optimized.onnx"
            # Not spinning: idle ORT threads spinning after a run would take the cores from the PyTorch call
            # that follows it in the round.
            sess = session(onnx_path, settings.threads, optimized_model=optimized, quiet=True, spinning=False)
            scale = model.check_scale(settings.scale)

            def torch_path(model=model, scale=scale, key=f"{name}/pytorch"):
                outputs[key] = model.super_resolve(lr, scale, RoutingSpec(k=settings.k))

            def ort_path(sess=sess, key=f"{name}/onnxruntime"):
                outputs[key] = run_onnx(sess, lr)

            variants[f"{name}/pytorch"], variants[f"{name}/onnxruntime"] = torch_path, ort_path
            parts[name] = (model, onnx_path, op_counts(onnx_path), op_counts(optimized))
        log(f"timing: {settings.rounds} rounds of {', '.join(variants)}; LR {lr.shape[-2]}x{lr.shape[-1]} -> HR "
            f"{settings.hr_size[0]}x{settings.hr_size[1]}, {settings.threads} threads ...")
        times = time_rounds(variants, torch.device("cpu"), settings.rounds, warmup=1)
        results = []
        for name, (model, onnx_path, ops, optimized_ops) in parts.items():
            mine = {r: times[f"{name}/{r}"] for r in RUNTIMES}
            sr, classes = outputs[f"{name}/pytorch"]
            row = ModelTimes(
                name, {r: statistics.median(t) for r, t in mine.items()}, mine,
                paired_ratio(mine["onnxruntime"], mine["pytorch"]),
                pixel_agreement(outputs[f"{name}/onnxruntime"][0], sr.clamp(0, 1)), ops, optimized_ops,
                heavy_share(classes, model.num_classes),
            )
            if settings.profile:
                row.profile = node_profile(onnx_path, lr, settings.threads)
            results.append(row)
    pcsr_vs_original = {r: paired_ratio(times[f"pcsr/{r}"], times[f"original/{r}"]) for r in RUNTIMES}
    return {"settings": asdict(settings), "machine": {**machine(), "load_average_before": load_before},
            "models": [asdict(r) for r in results], "pcsr_vs_original": pcsr_vs_original}
