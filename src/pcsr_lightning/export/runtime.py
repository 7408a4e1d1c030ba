"""Running exported files: ONNX Runtime sessions, the files' metadata, and the pixel comparison the
checks use. onnx and onnxruntime are the ``[export]`` extra: without them, the calls that need them
say which package to install."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

try:
    import onnx
except ImportError:  # the [export] extra is not installed
    onnx = None
try:
    import onnxruntime
except ImportError:
    onnxruntime = None

PT2_METADATA = "pcsr_export.json"  # the extra file of an exported program holding its metadata
INSTALL_HINT = "pip install 'pcsr-lightning[export]' (onnx, onnxruntime)"


def require_onnx() -> None:
    if onnx is None:
        raise ValueError(f"writing ONNX files needs the onnx package: {INSTALL_HINT}")


def require_onnxruntime() -> None:
    if onnxruntime is None:
        raise ValueError(f"running ONNX files needs the onnxruntime package: {INSTALL_HINT}")


def onnx_version() -> str | None:
    return None if onnx is None else onnx.__version__


def onnxruntime_version() -> str | None:
    return None if onnxruntime is None else onnxruntime.__version__


def session(path: str | Path, threads: int | None = None, optimized_model: str | Path | None = None,
            quiet: bool = False, spinning: bool = True):
    """An ONNX Runtime CPU session of ``path``; ``threads``: its intra-op threads (None: the runtime's
    default); ``optimized_model``: also write the graph as the runtime optimised it (what it fused);
    ``quiet``: the session logs errors only (not the notice that such a graph is tied to this CPU);
    ``spinning=False``: its threads sleep when idle instead of spinning (the runtime's default), so they
    take no CPU from whatever runs next."""
    require_onnxruntime()
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    if optimized_model is not None:
        options.optimized_model_filepath = str(optimized_model)
    if quiet:
        options.log_severity_level = 3
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_onnx(sess, lr: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The session on an (N,3,h,w) float batch: its outputs as tensors (SR first, then the class map)."""
    outputs = sess.run(None, {sess.get_inputs()[0].name: lr.detach().float().contiguous().numpy()})
    return tuple(torch.from_numpy(np.asarray(o)) for o in outputs)


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata_props of an ONNX file (without its weights)."""
    require_onnx()
    model = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in model.metadata_props}


def program_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an exported program (.pt2) was saved with."""
    extra = {PT2_METADATA: ""}
    with open(path, "rb") as f:  # a file object: torch.export.load warns on a path not ending in .pt2
        torch.export.load(f, extra_files=extra)
    if not extra[PT2_METADATA]:
        raise ValueError(f"{path}: no {PT2_METADATA} in this exported program (not written by pcsr export)")
    return json.loads(extra[PT2_METADATA])


def op_counts(path: str | Path) -> dict[str, int]:
    """Nodes per operator type (domain-qualified outside the default domain) of an ONNX file."""
    require_onnx()
    counts: dict[str, int] = {}
    for node in onnx.load(str(path), load_external_data=False).graph.node:
        name = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def to_levels(sr: torch.Tensor) -> torch.Tensor:
    """8-bit levels as ``pcsr upscale`` writes them: clamp to [0, 1], x255, round."""
    return sr.detach().float().clamp(0, 1).mul(255).round().to(torch.int16)


def pixel_agreement(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    """Two SR images in 8-bit levels: the share of values within one level, and the largest difference."""
    if a.shape != b.shape:
        raise ValueError(f"SR images of different shapes: {tuple(a.shape)} vs {tuple(b.shape)}")
    diff = (to_levels(a) - to_levels(b)).abs()
    return {"within_one_level": float((diff <= 1).float().mean()), "max_levels": int(diff.max())}
