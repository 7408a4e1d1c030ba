"""Stage 1 of FSRCNN-PCSR trained by the authors' code and by pcsr-train, side by side.

Both start from the released model's backbone B and heavy upsampler U_0 (frozen) and train the light
upsampler U_1 and the classifier C on the same photos, crop size, batch, query pixels, steps and seeds;
each trained model's k sweep (PSNR against GFLOPs, `pcsr eval`) on the report photos is then compared:
the gap between the two frameworks against the spread of the seeds within each.

    PCSR_RELEASE_CODE=/path/to/PCSR python experiments/release/side_by_side.py \\
        --train POOL/train --val POOL/val --report POOL/report \\
        --released /path/to/fsrcnn-pcsr-phase1.pth --steps 1000 --out results/side_by_side

The release's code is needed on disk (a checkout of github.com/3587jjh/PCSR: train_pcsr.py, models/,
datasets/, utils/); without it the script stops and names what is missing. The release assumes CUDA,
one process per GPU (torch.distributed, NCCL) and a few packages this project does not use; its training
runs here on the CPU with these changes made at run time, none to its files (`release_train`):
  - `.cuda()`, `device='cuda'` and `map_location='cuda:N'` go to the CPU; the process group is gloo;
  - the FLOPs it logs before training (`get_model_flops`, which needs pandas) are not computed;
  - `torchvision.transforms.ToTensor` is a small stand-in (PIL image -> float CHW in [0, 1]); `cv2`,
    `pandas` and `fast_pytorch_kmeans` (not used by stage-1 training) are empty modules when not installed.
Its config is its own `configs/fsrcnn-pcsr-phase1.yaml` with the photos, steps, batch, queries (`sample_q`),
seed, loader workers (0) and the photos kept in memory (`cache: in_memory`) set; the cosine schedule over
the run's steps, as its 500,000 steps have it. Seeds are 1, 2, 3 by default: the release reads seed 0 as
no seed.
"""

from __future__ import annotations

import argparse
import csv
import importlib.machinery
import io
import json
import os
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path

RELEASE_FILES = ("train_pcsr.py", "configs/fsrcnn-pcsr-phase1.yaml", "models/pcsr.py", "datasets/wrappers.py",
                 "utils/utils_dist.py")
BIN = Path(sys.executable).parent


def release_code(path: str | None) -> Path:
    """The release's checkout, or SystemExit naming what is missing."""
    if not path:
        raise SystemExit("side_by_side: the release's code is needed: pass --release-code or set PCSR_RELEASE_CODE "
                         "to a checkout of github.com/3587jjh/PCSR")
    root = Path(path).expanduser()
    missing = [f for f in RELEASE_FILES if not (root / f).is_file()]
    if missing:
        raise SystemExit(f"side_by_side: {root} is not the release's code: missing {', '.join(missing)}")
    return root


def check_inputs(args) -> None:
    for name in ("train", "val", "report"):
        folder = Path(getattr(args, name))
        if not folder.is_dir() or not any(folder.iterdir()):
            raise SystemExit(f"side_by_side: --{name} {folder} is not a folder of photos")
    if not Path(args.released).is_file():
        raise SystemExit(f"side_by_side: --released {args.released} not found (the release's fsrcnn-pcsr-phase1.pth)")


# --- the release's training, in its own process -------------------------------------------------------------

def _on_cpu(device):
    if device is not None and str(device).startswith("cuda"):
        return "cpu"
    return device


def stand_in(name: str) -> types.ModuleType:
    """An empty module that importlib can inspect (torch's compiler looks up modules by spec)."""
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    return module


class _UnusedKMeans:
    """Built by the release's PCSR, used only by its adaptive inference (never in stage-1 training)."""

    def __init__(self, *args, **kwargs):
        pass

    def fit_predict(self, *args, **kwargs):
        raise RuntimeError("fast_pytorch_kmeans is not installed: the release's adaptive inference cannot run here")


def patch_for_cpu() -> None:
    """What the release's training needs to run on a CPU (module docstring)."""
    import numpy as np
    import torch
    import torch.distributed as dist
    from PIL import Image

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    to = torch.Tensor.to
    torch.Tensor.to = lambda self, *a, **k: to(self, *[_on_cpu(x) if isinstance(x, (str, torch.device)) else x
                                                      for x in a], **{**k, **({"device": _on_cpu(k["device"])}
                                                                              if "device" in k else {})})
    for name in ("zeros", "ones", "tensor", "arange", "linspace", "empty", "rand", "randn", "full", "zeros_like",
                 "ones_like"):
        made = getattr(torch, name)

        def factory(*a, _made=made, **k):
            if "device" in k:
                k["device"] = _on_cpu(k["device"])
            return _made(*a, **k)
        setattr(torch, name, factory)
    load = torch.load
    torch.load = lambda f, *a, map_location=None, **k: load(f, *a, map_location="cpu", weights_only=False,
                                                            **{x: v for x, v in k.items() if x != "weights_only"})
    torch.cuda.device_count = lambda: 1
    torch.cuda.set_device = lambda *a, **k: None
    init = dist.init_process_group
    dist.init_process_group = lambda backend=None, **k: init(backend="gloo", **k)

    def to_tensor(img):
        array = np.asarray(img, dtype=np.float32) / 255.0
        return torch.from_numpy(array.reshape(array.shape[0], array.shape[1], -1).transpose(2, 0, 1).copy())

    transforms = stand_in("torchvision.transforms")
    transforms.ToTensor = lambda: to_tensor
    vision = stand_in("torchvision")
    vision.transforms = transforms
    sys.modules.setdefault("torchvision", vision)
    sys.modules.setdefault("torchvision.transforms", transforms)
    for name in ("cv2", "fast_pytorch_kmeans", "pandas"):
        try:
            __import__(name)
        except ImportError:
            sys.modules[name] = stand_in(name)
            sys.modules[name].KMeans = _UnusedKMeans
    del Image


def release_config(root: Path, args, seed: int) -> dict:
    import yaml

    config = yaml.safe_load((root / "configs" / "fsrcnn-pcsr-phase1.yaml").read_text())
    train = config["train_dataset"]
    train["dataset"]["args"].update(root_path=str(Path(args.train).resolve()), cache="in_memory",
                                    repeat=args.repeat)
    train["wrapper"]["args"].update(inp_size=args.lr_patch, scale=[4, 4], sample_q=args.queries)
    train.update(batch_size=args.batch, num_workers=0)
    config["valid_dataset"]["dataset"]["args"]["root_path"] = str(Path(args.val).resolve())
    config.update(seed=seed, iter_max=args.steps, iter_print=args.steps, iter_save=args.steps,
                  iter_val=args.steps + 1)
    config["lr_scheduler"]["args"].update(T_period=[args.steps], restarts=[args.steps])
    return config


def release_train(root: Path, args, seed: int, run: Path) -> Path:
    """Runs the release's `train_pcsr.py` main() in this process (started per seed by `main`)."""
    import yaml

    run.mkdir(parents=True, exist_ok=True)
    (run / "fsrcnn-pcsr-phase1.yaml").write_text(yaml.safe_dump(release_config(root, args, seed), sort_keys=False))
    phase0 = run / "save" / "fsrcnn-pcsr-phase0"
    phase0.mkdir(parents=True, exist_ok=True)
    if not (phase0 / "iter_last.pth").exists():  # stage 1 takes B and U_0 from the previous phase's last save
        (phase0 / "iter_last.pth").symlink_to(Path(args.released).resolve())
    os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(29500 + seed + os.getpid() % 1000))
    patch_for_cpu()
    sys.path.insert(0, str(root))
    os.chdir(run)
    import train_pcsr

    train_pcsr.get_model_flops = lambda *a, **k: 0.0
    sys.argv = ["train_pcsr.py", "--config", "fsrcnn-pcsr-phase1.yaml"]
    train_pcsr.main()
    return run / "save" / "fsrcnn-pcsr-phase1" / f"iter_{args.steps}.pth"


# --- both frameworks, then the curves ------------------------------------------------------------------------

def ours_command(args, seed: int, run: Path, released_ckpt: Path) -> list[str]:
    return [str(BIN / "pcsr-train"), "experiment=fsrcnn_pcsr", "data=image_folder", "trainer=cpu", "logger=csv",
            "callbacks=none", "profile=quick", f"data.train.path={Path(args.train).resolve()}",
            f"data.val.path={Path(args.val).resolve()}", f"init.checkpoint={released_ckpt}", "init.stages=[stage0]",
            "init.weights=pytorch", f"profile.steps.stage={args.steps}", f"profile.batch_size={args.batch}",
            f"profile.queries={args.queries}", f"data.lr_patch={args.lr_patch}", f"profile.val_every={args.steps}",
            "profile.val_images=1", f"seed={seed}", f"hydra.run.dir={run}"]


def evaluate(ckpt: Path, args, out: Path) -> list[dict]:
    cmd = [str(BIN / "pcsr"), "eval", "--ckpt", str(ckpt), "--hr-dir", str(Path(args.report).resolve()),
           "--scale", "4", "--k", *[str(k) for k in args.ks], "--ends", "--out", str(out)]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return [r for r in csv.DictReader(out.open()) if r["image"] == "mean"]


def curve(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """setting label (k=0.5, all-light, all-heavy) -> (GFLOPs, PSNR)."""
    label = lambda r: f"k={float(r['k']):g}" if r["setting"] == "k" else r["setting"]  # noqa: E731
    return {label(r): (float(r["gflops_paper"]), float(r["psnr"])) for r in rows}


def timed(cmd: list[str], log: Path) -> float:
    start = time.perf_counter()
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode:
        raise SystemExit(f"side_by_side: {' '.join(cmd[:3])} ... failed ({proc.returncode}), see {log}")
    return time.perf_counter() - start


def mean_curve(curves: dict[int, dict]) -> dict[str, tuple[float, float]]:
    """setting -> (mean GFLOPs, mean PSNR) over the seeds."""
    settings = list(next(iter(curves.values())))
    return {s: (statistics.mean(c[s][0] for c in curves.values()), statistics.mean(c[s][1] for c in curves.values()))
            for s in settings}


def at_gflops(curve: dict[str, tuple[float, float]], gflops: float) -> float:
    """PSNR of a curve at ``gflops``, linear between its two nearest points (its ends outside them)."""
    points = sorted(curve.values())
    for (g0, p0), (g1, p1) in zip(points, points[1:]):
        if g0 <= gflops <= g1:
            return p0 if g1 == g0 else p0 + (p1 - p0) * (gflops - g0) / (g1 - g0)
    return points[0][1] if gflops < points[0][0] else points[-1][1]


def report(curves: dict[str, dict[int, dict]], seconds: dict[str, list[float]]) -> str:
    """The table: per setting, each framework's mean PSNR and seed spread (max - min), their gap at the same
    k, and ours against the release's curve at our GFLOPs (the classifiers may spend different GFLOPs at one k)."""
    means = {side: mean_curve(c) for side, c in curves.items()}
    out = io.StringIO()
    out.write("| setting | GFLOPs release / ours | release PSNR (spread) | ours PSNR (spread) | ours - release, same k "
              "| ours - release, same GFLOPs |\n| --- | --- | --- | --- | --- | --- |\n")
    for s in means["release"]:
        cells = []
        for side in ("release", "ours"):
            psnr = [c[s][1] for c in curves[side].values()]
            cells.append((means[side][s][0], means[side][s][1], max(psnr) - min(psnr) if len(psnr) > 1 else None))
        (g_r, p_r, d_r), (g_o, p_o, d_o) = cells
        spread = lambda d: "-" if d is None else f"{d:.3f}"  # noqa: E731
        out.write(f"| {s} | {g_r:.3f} / {g_o:.3f} | {p_r:.3f} ({spread(d_r)}) | {p_o:.3f} ({spread(d_o)}) "
                  f"| {p_o - p_r:+.3f} | {p_o - at_gflops(means['release'], g_o):+.3f} |\n")
    for side, secs in seconds.items():
        out.write(f"\n{side}: {len(secs)} runs (seeds), {statistics.mean(secs):.0f} s of training each")
    return out.getvalue() + "\n"


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--release-code", default=os.environ.get("PCSR_RELEASE_CODE"),
                   help="checkout of github.com/3587jjh/PCSR (default: $PCSR_RELEASE_CODE)")
    p.add_argument("--released", required=True, help="the release's fsrcnn-pcsr-phase1.pth (B and U_0 come from it)")
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True, help="our run's validation photos (the release's run does not validate)")
    p.add_argument("--report", required=True, help="the photos the k sweeps are measured on")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=1000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--queries", type=int, default=1024, help="query pixels per 128x128 HR crop")
    p.add_argument("--lr-patch", type=int, default=32)
    p.add_argument("--repeat", type=int, default=20, help="the release's dataset repeat (crops per photo and epoch)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--ks", type=float, nargs="+", default=[-1.0, 0.0, 1.0, 2.0])
    p.add_argument("--sides", nargs="+", default=["release", "ours"], choices=["release", "ours"])
    p.add_argument("--release-train-seed", type=int, help=argparse.SUPPRESS)  # the child process of one release run
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse(argv)
    root = release_code(args.release_code)
    check_inputs(args)
    out = Path(args.out).resolve()
    if args.release_train_seed is not None:
        release_train(root, args, args.release_train_seed, out / "release" / f"seed{args.release_train_seed}")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    released_ckpt = out / "released.ckpt"
    if not released_ckpt.exists():
        subprocess.run([str(BIN / "pcsr"), "import-official", "--src", args.released, "--out", str(released_ckpt)],
                       check=True, stdout=subprocess.DEVNULL)
    for seed in args.seeds:
        for side in args.sides:
            run = out / side / f"seed{seed}"
            done = out / f"curves-{side}-seed{seed}.json"
            if done.exists():  # measured by an earlier call (or by a call for other seeds beside this one)
                continue
            if side == "release":
                cmd = [sys.executable, __file__, *(argv if argv is not None else sys.argv[1:]),
                       "--release-code", str(root), "--release-train-seed", str(seed)]
                seconds = timed(cmd, out / f"release-seed{seed}.log")
                ckpt = run / "trained.ckpt"
                subprocess.run([str(BIN / "pcsr"), "import-official", "--src",
                                str(run / "save" / "fsrcnn-pcsr-phase1" / f"iter_{args.steps}.pth"),
                                "--out", str(ckpt)], check=True, stdout=subprocess.DEVNULL)
            else:
                seconds = timed(ours_command(args, seed, run, released_ckpt), out / f"ours-seed{seed}.log")
                ckpt = run / "final.ckpt"
            sweep = curve(evaluate(ckpt, args, run / "k_sweep.csv"))
            done.write_text(json.dumps({"args": vars(args), "curve": sweep, "seconds": seconds}, indent=1))
            print(f"{side} seed {seed}: {seconds:.0f} s, {sweep}", flush=True)
    found = {side: [json.loads(p.read_text()) for p in sorted(out.glob(f"curves-{side}-seed*.json"))]
             for side in ("release", "ours")}
    if all(found.values()):
        text = report({s: dict(enumerate(d["curve"] for d in v)) for s, v in found.items()},
                      {s: [d["seconds"] for d in v] for s, v in found.items()})
        (out / "report.md").write_text(text)
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
