"""Pre-emption on SLURM: the requeue signal saves a checkpoint, the same command resumes from it.

SLURM is simulated: its environment variables make Lightning use its SLURM support, and a fake
``scontrol`` on the PATH records the requeue instead of talking to a scheduler.
"""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from geoseg.config import load_config
from geoseg.models.checkpoint import read_checkpoint
from geoseg.training.run import resolve_resume

from conftest import REPO_ROOT, write_config

STEPS_PER_EPOCH = 2  # 8 Train tiles, batch 4, drop_last
MAX_EPOCH = 12
FAKE_SCONTROL = """#!/bin/sh
echo "$@" >> "{record}"
"""


def slurm_environment(workdir):
    bin_dir = workdir / "bin"
    bin_dir.mkdir()
    scontrol = bin_dir / "scontrol"
    scontrol.write_text(FAKE_SCONTROL.format(record=workdir / "scontrol_calls.txt"))
    scontrol.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "geoseg-train",
        "SLURM_NTASKS": "1",
        "SLURM_NTASKS_PER_NODE": "1",
        "SLURM_PROCID": "0",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "0",
        "SLURM_NODELIST": "127.0.0.1",
        "SLURM_JOB_NUM_NODES": "1",
    }


def wait_for(condition, timeout=240):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


def auto_resume_config(synthetic_root, workdir, **values):
    """The tiny config ``workdir/tiny.py`` resuming "auto" from its weights in ``workdir/weights``."""
    return write_config(
        workdir / "tiny.py",
        data_root=synthetic_root,
        weights_path=workdir / "weights",
        resume_ckpt_path="auto",
        **values,
    )


def train_steps(log_dir):
    """The optimizer steps at which a run logged its per-step training loss."""
    (metrics,) = log_dir.glob("metrics.csv")
    with metrics.open() as file:
        return [int(row["step"]) for row in csv.DictReader(file) if row.get("train_loss_step")]


@pytest.mark.slow  # two training runs of a few seconds each
def test_the_requeue_signal_saves_a_checkpoint_and_the_same_command_resumes_from_it(
    synthetic_root, tmp_path
):
    weights = tmp_path / "weights"
    config = auto_resume_config(synthetic_root, tmp_path, max_epoch=MAX_EPOCH)
    with config.open("a") as file:
        file.write('logger = "csv"\ncheckpoint_every_n_steps = None\n')
    command = [sys.executable, str(REPO_ROOT / "train_supervision.py"), "-c", str(config)]
    env = slurm_environment(tmp_path)

    first = subprocess.Popen(
        command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for(lambda: (weights / "last.ckpt").is_file())  # the first epoch is done
    first.send_signal(signal.SIGUSR1)
    wait_for(lambda: (tmp_path / "scontrol_calls.txt").is_file())
    first.kill()  # SLURM ends the requeued job
    first.wait()
    assert first.returncode == -signal.SIGKILL, "the run ended before it was pre-empted"
    assert (tmp_path / "scontrol_calls.txt").read_text().split() == ["requeue", "4242"]
    saved = read_checkpoint(weights / "hpc_ckpt_1.ckpt")
    preempted_at = saved["global_step"]
    assert STEPS_PER_EPOCH <= preempted_at < MAX_EPOCH * STEPS_PER_EPOCH

    # "auto" picks the pre-emption checkpoint: it is newer than last.ckpt
    assert resolve_resume(load_config(config)) == str(weights / "hpc_ckpt_1.ckpt")
    second = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {weights / 'hpc_ckpt_1.ckpt'}" in second.stderr

    # the second run trained only the steps after the pre-emption, up to the end of the schedule
    logs = sorted((tmp_path / "lightning_logs" / "tiny").glob("version_*"))
    assert len(logs) == 2
    assert len(train_steps(logs[1])) == MAX_EPOCH * STEPS_PER_EPOCH - preempted_at
    assert min(train_steps(logs[1])) > max(train_steps(logs[0]))
    final = read_checkpoint(weights / "last.ckpt")
    assert final["global_step"] == MAX_EPOCH * STEPS_PER_EPOCH
    assert final["epoch"] == MAX_EPOCH - 1


def test_auto_resume_starts_fresh_without_a_checkpoint_and_takes_the_newest(
    synthetic_root, tmp_path
):
    weights = tmp_path / "weights"
    config = auto_resume_config(synthetic_root, tmp_path)
    assert resolve_resume(load_config(config)) is None
    weights.mkdir()
    for name in ("hpc_ckpt_1.ckpt", "last.ckpt"):
        torch.save({}, weights / name)
        time.sleep(0.01)
    assert resolve_resume(load_config(config)) == str(weights / "last.ckpt")
    explicit = load_config(config, overrides={"resume_ckpt_path": "other.ckpt"})
    assert resolve_resume(explicit) == "other.ckpt"
