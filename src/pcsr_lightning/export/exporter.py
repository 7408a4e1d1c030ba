"""``pcsr export``'s work: a loaded model -> an ONNX file or a torch.export program (.pt2), checked.

ONNX goes through torch.onnx's TorchScript exporter (``dynamo=False``): it traces the routed graph's
``nonzero`` into ONNX NonZero and keeps h and w dynamic from the input's shape, and it needs nothing
beyond torch and onnx. (The torch.export-based exporter, torch's default, needs the onnxscript package.)
The exported program is ``torch.export.export`` with dynamic N, h and w; the per-class pixel counts are
data-dependent sizes in it.

Every file is written to a temporary name, run once on a small input against the PyTorch graph, and only
then moved into place: a failed export leaves nothing behind and replaces nothing.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pcsr_lightning import __version__
from pcsr_lightning.export.graph import GRAPHS, OriginalGraph, RoutedGraph
from pcsr_lightning.export.runtime import (
    PT2_METADATA,
    onnx,
    onnxruntime_version,
    pixel_agreement,
    require_onnx,
    run_onnx,
    session,
)
from pcsr_lightning.inference.router import check_k, cost_list
from pcsr_lightning.io.checkpoint import LoadedModel
from pcsr_lightning.io.files import atomic_write, check_outputs
from pcsr_lightning.io.weights import load_model, model_reads

FORMATS = ("onnx", "exported-program")
DEFAULT_OPSET = 17  # ScatterND, NonZero and Resize as the graphs use them; ONNX Runtime 1.x runs it
DEFAULT_PCSR_SCALE = 4
# The graphs' smallest LR side: refinement needs 3 HR rows and columns, and torch.export specialises sizes 0 and 1.
MIN_LR_SIDE = 2
MAX_LR_SIDE = 1 << 16
# The check of a written file: an input of this LR size, batch 2 (batch 1 would be specialised by torch.export).
CHECK_SHAPE = (2, 3, 12, 16)
CHECK_AGREEMENT = 0.999  # share of 8-bit values within one level of the PyTorch graph's


class NotExportable(ValueError):
    """An option the graphs cannot hold; the message starts with ``not exportable:`` and names it."""


@dataclass(frozen=True)
class ExportSpec:
    """What the graph computes: the routing options fixed at export (PCSR only) and its outputs."""

    scale: float | None = None  # None: the original network's own scale, x4 for PCSR
    k: float = 0.0
    graph: str = "routed"  # routed (each upsampler on its own pixels) or dense (every upsampler, then select)
    refine: bool = True
    class_map: bool = False  # PCSR: also output the class map (N,H,W) int64
    adaptive: bool = False  # ADM: refused (not exportable)
    skip_flat: float | None = None  # the flat-tile gate: refused (not exportable)


@dataclass
class ExportResult:
    path: Path
    metadata: dict[str, str]
    check: dict[str, float]  # the written file against the PyTorch graph on a small input


SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}


def check_spec(spec: ExportSpec, fmt: str, out: str | Path) -> None:
    """The refusals that need no model: options that do not export, the format and the file's suffix."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    if Path(out).suffix.lower() != SUFFIXES[fmt]:
        raise ValueError(f"--out {out}: a {fmt} file is named *{SUFFIXES[fmt]} (runtimes and torch.export.load "
                         "go by it)")
    if spec.adaptive:
        raise NotExportable("not exportable: --adaptive (ADM clusters each image's difficulties with a k-means "
                            "whose iterations depend on the data); export a fixed cost knob with --k instead")
    if spec.skip_flat is not None:
        raise NotExportable("not exportable: --skip-flat (the flat-tile gate plans backbone windows per image "
                            "in Python, with sizes from the image's content); export without it")
    if spec.graph not in GRAPHS:
        raise ValueError(f"--graph must be one of {list(GRAPHS)}, got {spec.graph!r}")
    check_k(spec.k)


def export_scale(loaded: LoadedModel, spec: ExportSpec) -> int:
    """The integer scale the graph upscales by, or ``NotExportable`` naming the option at fault."""
    if not loaded.is_pcsr:
        own = int(loaded.model.scale)
        if spec.scale is not None and float(spec.scale) != own:
            raise ValueError(f"this original network upscales x{own} only, got --scale {spec.scale:g}")
        return own
    scale = DEFAULT_PCSR_SCALE if spec.scale is None else spec.scale
    if float(scale) != int(scale) or int(scale) < 2:
        raise NotExportable(f"not exportable: --scale {scale:g} (the graph's output is h*s x w*s, which needs an "
                            "integer scale >= 2; PCSR's other scales run in pcsr upscale)")
    return int(scale)


def build_graph(loaded: LoadedModel, spec: ExportSpec) -> nn.Module:
    """The module to export, in eval mode, over the loaded network's own weights."""
    scale = export_scale(loaded, spec)
    model = loaded.model.eval()
    if not loaded.is_pcsr:
        return OriginalGraph(model).eval()
    return RoutedGraph(model, scale, spec.k, spec.refine, spec.class_map, dense=spec.graph == "dense").eval()


def metadata(loaded: LoadedModel, spec: ExportSpec, fmt: str, source: str | Path, opset: int | None) -> dict[str, str]:
    """What the file says about itself (strings, as ONNX metadata_props hold them)."""
    scale = export_scale(loaded, spec)
    meta = {
        "pcsr.producer": f"pcsr-lightning {__version__} (pcsr export)",
        "pcsr.kind": loaded.kind,
        "pcsr.source": Path(source).name,
        "pcsr.scale": str(scale),
        "pcsr.input": f"lr: N x 3 x h x w float32 RGB in [0, 1], h and w >= {MIN_LR_SIDE}",
        "pcsr.outputs": "sr" + (",classes" if loaded.is_pcsr and spec.class_map else ""),
        "pcsr.output_range": "sr clamped to [0, 1]; x255 and round for pcsr upscale's 8-bit pixels",
        "torch.version": torch.__version__,
        "format": fmt,
    }
    if loaded.is_pcsr:
        meta.update({
            "pcsr.k": repr(float(spec.k)),
            "pcsr.graph": spec.graph,
            "pcsr.refine": str(spec.refine).lower(),
            "pcsr.num_classes": str(loaded.model.num_classes),
            "pcsr.cost_list": json.dumps([round(c, 6) for c in cost_list(loaded.model, float(scale)).tolist()]),
            "pcsr.classes": "0 = the heaviest upsampler",
        })
    if fmt == "onnx":
        meta.update({"onnx.opset": str(opset), "onnx.version": onnx.__version__,
                     "onnx.exporter": "torch.onnx.export(dynamo=False), TorchScript-based"})
    else:
        meta["exporter"] = "torch.export.export, dynamic N, h, w"
    return meta


def _check(outputs: tuple[torch.Tensor, ...], expected, class_map: bool) -> dict[str, float]:
    expected = expected if isinstance(expected, tuple) else (expected,)
    check = pixel_agreement(outputs[0], expected[0])
    if class_map:
        check["class_pixels_differing"] = int((outputs[1] != expected[1]).sum())
    if check["within_one_level"] < CHECK_AGREEMENT:
        raise ValueError(f"the exported graph does not reproduce the PyTorch graph on a test input: {check}")
    return check


def write_onnx(graph: nn.Module, tmp: Path, meta: dict[str, str], opset: int, class_map: bool) -> dict[str, float]:
    """Export to ``tmp``, add the metadata, and run it in ONNX Runtime when installed (the version it was
    checked with goes into the metadata)."""
    require_onnx()
    example = torch.rand(*CHECK_SHAPE, generator=torch.Generator().manual_seed(0))
    outputs = ["sr", "classes"] if class_map else ["sr"]
    axes = {"lr": {0: "n", 2: "h", 3: "w"}, "sr": {0: "n", 2: "H", 3: "W"}, "classes": {0: "n", 1: "H", 2: "W"}}
    with torch.no_grad(), warnings.catch_warnings():
        # The TorchScript exporter is chosen on purpose (module docstring); its deprecation notice says nothing
        # about this file.
        warnings.filterwarnings("ignore", message="You are using the legacy TorchScript-based ONNX export",
                                category=DeprecationWarning)
        torch.onnx.export(graph, (example,), str(tmp), dynamo=False, input_names=["lr"], output_names=outputs,
                          dynamic_axes={name: axes[name] for name in ["lr", *outputs]}, opset_version=opset)
        expected = graph(example)
    model = onnx.load(str(tmp))
    version = onnxruntime_version()
    meta = {**meta, "onnxruntime.checked_with": version or "not checked (onnxruntime not installed)"}
    for key, value in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(tmp))
    if version is None:
        return {}
    return _check(run_onnx(session(tmp), example), expected, class_map)


def write_program(graph: nn.Module, tmp: Path, meta: dict[str, str], class_map: bool) -> dict[str, float]:
    """torch.export with dynamic N, h, w, saved with the metadata; reloaded and run once."""
    example = torch.rand(*CHECK_SHAPE, generator=torch.Generator().manual_seed(0))
    dim = torch.export.Dim
    dynamic = {"lr": {0: dim("n", min=1, max=1024), 2: dim("h", min=MIN_LR_SIDE, max=MAX_LR_SIDE),
                      3: dim("w", min=MIN_LR_SIDE, max=MAX_LR_SIDE)}}
    with torch.no_grad():
        program = torch.export.export(graph, (example,), dynamic_shapes=dynamic)
        expected = graph(example)
    # Through file objects: torch.export wants a path ending in .pt2, and the temporary name does not.
    with open(tmp, "wb") as f:
        torch.export.save(program, f, extra_files={PT2_METADATA: json.dumps(meta, indent=1)})
    with open(tmp, "rb") as f:
        reloaded = torch.export.load(f).module()
    with torch.no_grad():
        outputs = reloaded(example)
    return _check(outputs if isinstance(outputs, tuple) else (outputs,), expected, class_map)


def export_model(source: str | Path, out: str | Path, fmt: str = "onnx", spec: ExportSpec = ExportSpec(),
                 opset: int = DEFAULT_OPSET, overwrite: bool = False) -> ExportResult:
    """Load ``source`` (any model file the project reads), export it as ``fmt`` to ``out``; refusals (an
    option that does not export, an existing ``out`` without ``overwrite``) come before any work."""
    check_spec(spec, fmt, out)
    if fmt == "onnx":
        require_onnx()
    check_outputs([out], model_reads(source), overwrite=overwrite)
    loaded = load_model(source)
    meta = metadata(loaded, spec, fmt, source, opset if fmt == "onnx" else None)
    graph = build_graph(loaded, spec)
    class_map = loaded.is_pcsr and spec.class_map
    check: dict[str, float] = {}

    def write(tmp: Path) -> None:
        nonlocal meta
        if fmt == "onnx":
            check.update(write_onnx(graph, tmp, meta, opset, class_map))
            meta = {**meta, "onnxruntime.checked_with": onnxruntime_version() or "not checked"}
        else:
            check.update(write_program(graph, tmp, meta, class_map))

    path = atomic_write(out, write, overwrite=overwrite)
    return ExportResult(path, meta, check)
