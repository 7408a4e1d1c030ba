"""Beyond one machine: launcher resources from the trainer, the global batch split over DDP processes, and a
real sweep through the local submitit launcher."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import submitit
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from pcsr_lightning.config import config_dir, device_count, gpus_per_node, register_resolvers
from pcsr_lightning.data.datamodule import SRDataModule, per_device_batch
from pcsr_lightning.data.sources import SamplePhotos
from pcsr_lightning.io.checkpoint import load_checkpoint

BIN = Path(sys.executable).parent


# ------------------------------------------------------------------ resources and batch


def test_device_count_and_gpus_per_node():
    assert device_count(4) == 4
    assert device_count("2") == 2
    assert device_count([0, 3]) == 2
    for bad in (-1, 0, "auto", []):
        with pytest.raises(ValueError, match="trainer.devices=4"):
            device_count(bad)
    assert gpus_per_node("gpu", 4) == 4
    assert gpus_per_node("cuda", [1]) == 1
    assert gpus_per_node("cpu", 2) is None
    with pytest.raises(ValueError, match="count of devices"):
        gpus_per_node("cpu", -1)
    with pytest.raises(ValueError, match="hydra.launcher.gpus_per_node"):
        gpus_per_node("auto", 1)


def test_global_batch_is_split_over_processes():
    assert per_device_batch(16, 1) == 16
    assert per_device_batch(16, 4) == 4   # one node with 4 GPUs
    assert per_device_batch(16, 8) == 2   # 2 nodes x 4 GPUs
    with pytest.raises(ValueError, match="does not split over 3 processes"):
        per_device_batch(16, 3)
    source = SamplePhotos(["astronaut"])
    dm = SRDataModule(source, source, batch_size=16, crops_per_image=16)
    assert dm.train_dataloader().batch_size == 16                    # no trainer yet: one process
    dm.trainer = SimpleNamespace(world_size=4)                        # what Lightning attaches under DDP
    assert dm.train_dataloader().batch_size == 4
    dm.trainer = SimpleNamespace(world_size=3)
    with pytest.raises(ValueError, match="batch_size=16"):
        dm.train_dataloader()


# ------------------------------------------------------------------ SLURM launcher


def slurm_launcher(tmp_path: Path, *overrides: str):
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm", f"hydra.sweep.dir={tmp_path}", *overrides],
                      return_hydra_config=True)
    return cfg, instantiate(cfg.hydra.launcher)


def sbatch_script(monkeypatch, tmp_path: Path, *overrides: str) -> str:
    """The sbatch file the SLURM launcher would submit: its own launch() up to the submission, on a machine
    without SLURM (submitit looks for srun first)."""
    cfg, launcher = slurm_launcher(tmp_path, *overrides)
    launcher.setup(hydra_context=None, task_function=None, config=cfg)

    class Submitted(Exception):
        pass

    def capture(executor, *args, **kwargs):
        raise Submitted(executor._executor._make_submission_file_text("python -m job", "uid"))

    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))
    monkeypatch.setattr(submitit.AutoExecutor, "map_array", capture)
    with pytest.raises(Submitted) as sent:
        launcher.launch([["experiment=carn_pcsr"]], initial_job_idx=0)
    return str(sent.value)


@pytest.mark.parametrize("overrides, nodes, gpus, tasks", [
    (["trainer=cpu"], 1, None, 1),
    (["trainer=gpu"], 1, 1, 1),
    (["trainer=ddp", "trainer.devices=4"], 1, 4, 4),
    (["trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2"], 2, 4, 4),
    (["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2"], 1, None, 2),
])
def test_slurm_launcher_resolves_for_every_trainer(tmp_path, overrides, nodes, gpus, tasks):
    _, launcher = slurm_launcher(tmp_path, *overrides)
    p = launcher.params
    assert (p["nodes"], p["gpus_per_node"], p["tasks_per_node"]) == (nodes, gpus, tasks)
    assert (p["cpus_per_task"], p["mem_gb"], p["timeout_min"]) == (8, 64, 4320)
    assert p["partition"] is None and p["account"] is None and p["max_num_timeout"] == 3


def test_slurm_launcher_plain_keys_reach_the_sbatch_file(monkeypatch, tmp_path):
    script = sbatch_script(monkeypatch, tmp_path, "trainer=ddp", "trainer.devices=4", "trainer.num_nodes=2",
                           "hydra.launcher.partition=gpu", "hydra.launcher.account=sr-lab",
                           "hydra.launcher.timeout_min=90", "hydra.launcher.mem_gb=128",
                           "hydra.launcher.cpus_per_task=6")
    for line in ("--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4", "--cpus-per-task=6", "--mem=128GB",
                 "--time=90", "--partition=gpu", "--account=sr-lab"):
        assert f"#SBATCH {line}\n" in script, (line, script)
    cpu_script = sbatch_script(monkeypatch, tmp_path, "trainer=cpu")
    assert "--gpus-per-node" not in cpu_script and "#SBATCH --ntasks-per-node=1\n" in cpu_script


def test_launchers_refuse_an_uncounted_device_setting(tmp_path):
    for launcher in ("slurm", "local"):
        register_resolvers()
        with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
            cfg = compose("train", overrides=[f"hydra/launcher={launcher}", "trainer=ddp"],
                          return_hydra_config=True)
        with pytest.raises(Exception, match="pass e.g. trainer.devices=4"):
            instantiate(cfg.hydra.launcher)


# ------------------------------------------------------------------ a real local sweep


def test_local_submitit_sweep_runs_two_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    proc = subprocess.run(
        [str(BIN / "pcsr-train"), "-m", "hydra/launcher=local", "experiment=fsrcnn_pcsr,fsrcnn_original",
         "profile=smoke", "logger=csv", "callbacks=none", "profile.steps.stage0=1", "profile.steps.stage=1",
         "profile.steps.original=1", f"hydra.sweep.dir={sweep}"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    common = ["callbacks=none", "logger=csv", "profile.steps.original=1", "profile.steps.stage0=1",
              "profile.steps.stage=1", "profile=smoke"]
    pcsr_job, original_job = (",".join(sorted([*common, f"experiment={e}"]))
                              for e in ("fsrcnn_pcsr", "fsrcnn_original"))
    jobs = {pcsr_job: ["stage0", "stage1"], original_job: ["original"]}
    for job, stages in jobs.items():
        run = sweep / job
        data = json.loads((run / "manifest.json").read_text())
        assert [(s["name"], s["status"]) for s in data["stages"]] == [(s, "done") for s in stages]
        assert load_checkpoint(data["final_checkpoint"]).is_pcsr == (job == pcsr_job)
        assert "final checkpoint:" in (run / "train_app.log").read_text()
        rows = (run / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
        assert len(rows) > 1 and "train_loss" in rows[0]   # the job logged its training
    # each job ran as its own submitit process, with its own stdout and stderr
    outs = sorted((sweep / ".submitit").glob("*/*_0_log.out"))
    assert len(outs) == 2
    for out in outs:
        text = out.read_text()
        assert "Job completed successfully" in text
        assert out.with_name(out.name.replace(".out", ".err")).is_file()
    assert {json.loads((sweep / j / "manifest.json").read_text())["experiment"] for j in jobs} == {
        "fsrcnn_pcsr", "fsrcnn_original"}


def submitit_tasks(folder: Path) -> list[int]:
    """Pids of the submitit task processes running jobs of this sweep."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in args and any(str(folder).encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the job's process through /proc")
def test_preempted_job_is_requeued_and_continues_its_stage(tmp_path):
    """SLURM preempts a job by sending USR2; the local launcher runs the same submitit code, which requeues
    the job with the same overrides, and resume=true makes it continue from its checkpoint."""
    sweep = tmp_path / "sweep"
    steps = 60   # the signal comes after the first checkpoint, well before the last step
    proc = subprocess.Popen(
        [str(BIN / "pcsr-train"), "-m", "hydra/launcher=local", "experiment=fsrcnn_original", "profile=smoke",
         "logger=csv", "callbacks=none", f"profile.steps.original={steps}", "resume=true",
         f"hydra.sweep.dir={sweep}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    run = sweep / ",".join(sorted(["experiment=fsrcnn_original", "profile=smoke", "logger=csv", "callbacks=none",
                                   f"profile.steps.original={steps}", "resume=true"]))
    last = run / "stages" / "original" / "lightning" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not last.is_file() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    tasks = submitit_tasks(sweep / ".submitit")
    assert last.is_file() and len(tasks) == 1, proc.communicate(timeout=60)[0][-3000:]
    os.kill(tasks[0], signal.SIGUSR2)
    out = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, out[-3000:]
    job_log = next((sweep / ".submitit").glob("*/*_0_log.out")).read_text()
    assert "this job is preempted" in job_log and "Requeued job" in job_log, job_log[-3000:]
    assert job_log.count("Starting with JobEnvironment") == 2   # the same job ran a second time
    assert "stage original continues from" in (run / "train_app.log").read_text()
    data = json.loads((run / "manifest.json").read_text())
    assert data["stages"][0]["status"] == "done" and data["stages"][0]["metrics"]["steps"] == steps
