"""DDP: exact validation metrics with 2 processes (gloo, CPU), the unpadded validation sampler."""

import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader, DistributedSampler

from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.datasets.io import read_mask
from geoseg.datasets.synthetic import write_target_dataset
from geoseg.errors import ConfigError
from geoseg.metrics import segmentation_scores
from geoseg.models.checkpoint import read_checkpoint
from geoseg.training.distributed import unpadded_eval_loaders
from geoseg.training.supervised import VALIDATION_KEY

from conftest import (
    REPO_ROOT,
    VAL_BATCH,
    VAL_TILES,
    run_python,
    single_process_validation,
    write_config,
)

# Appended to conftest's TINY_CONFIG: two CPU processes with Lightning's DDP (gloo).
DDP_SETTINGS = """
devices = 2
strategy = "ddp"
val_loader = DataLoader(TargetDataset("{data_root}", "Val"), batch_size={val_batch})
"""


# --- the sampler ---------------------------------------------------------------------------------


@pytest.mark.parametrize("num_replicas", [1, 2, 3, 4])
@pytest.mark.parametrize("size", [4, 5, 7, 9])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_index_exactly_once_over_the_processes(size, num_replicas, shuffle):
    # a shuffled loader too: every process must split the same index list
    loader = DataLoader(list(range(size)), batch_size=1, shuffle=shuffle)
    shards = [
        [int(batch) for batch in unpadded_eval_loaders(loader, num_replicas, rank)]
        for rank in range(num_replicas)
    ]
    assert sorted(index for shard in shards for index in shard) == list(range(size))
    lengths = [len(shard) for shard in shards]
    assert max(lengths) - min(lengths) <= 1
    # torch's sampler, which Lightning would inject, repeats samples whenever the size is uneven
    padded = [
        list(DistributedSampler(range(size), num_replicas, r, shuffle=False))
        for r in range(num_replicas)
    ]
    assert sum(map(len, padded)) == size + (-size % num_replicas)


def test_loaders_are_rebuilt_only_under_ddp_and_too_small_sets_are_refused():
    loader = DataLoader(list(range(VAL_TILES)), batch_size=VAL_BATCH)
    assert unpadded_eval_loaders(loader, 1, 0) is loader
    rank0, rank1 = (unpadded_eval_loaders([loader], 2, rank)[0] for rank in (0, 1))
    assert [batch.tolist() for batch in rank0] == [[0, 2], [4]]
    assert [batch.tolist() for batch in rank1] == [[1, 3]]
    assert rank0.batch_size == VAL_BATCH and isinstance(rank0.sampler, DistributedSampler)
    with pytest.raises(ConfigError, match="2 samples cannot be split over 3 processes"):
        unpadded_eval_loaders(DataLoader([0, 1]), 3, 0)


# --- DDP end to end ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One epoch of the tiny config with 2 processes, launched by Lightning from the stage script."""
    workdir = tmp_path_factory.mktemp("ddp")
    data_root = write_target_dataset(
        workdir / "data", {"Train": 8, "Val": VAL_TILES}, tile_size=32, seed=4
    )
    config_path = write_config(
        workdir / "ddp.py", data_root=data_root, weights_path=workdir / "weights", max_epoch=1
    )
    with config_path.open("a") as file:
        file.write(DDP_SETTINGS.format(data_root=data_root, val_batch=VAL_BATCH))
    result = run_python(
        REPO_ROOT / "train_supervision.py", "-c", config_path, cwd=workdir, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, data_root, result.stdout + result.stderr


@pytest.mark.slow  # two-process DDP training
def test_ddp_ran_two_processes_with_gloo(ddp_run):
    output = ddp_run[2]
    assert "distributed_backend=gloo" in output
    assert "All distributed processes registered. Starting with 2 processes" in output


@pytest.mark.slow  # two-process DDP training
def test_ddp_validation_equals_single_process_validation_exactly(ddp_run):
    workdir, data_root, _ = ddp_run
    checkpoint = read_checkpoint(workdir / "weights" / "last.ckpt")
    ddp_confusion = torch.tensor(checkpoint[VALIDATION_KEY]["confusion_matrix"]["val"])
    module, trainer = single_process_validation(workdir / "weights" / "last.ckpt", data_root)
    single_confusion = module.last_val_confusion["val"]
    assert torch.equal(ddp_confusion, single_confusion)
    # every non-ignored ground-truth pixel counted once: nothing repeated, nothing dropped
    masks = [read_mask(path) for path in sorted((data_root / "Val" / "masks_png").iterdir())]
    assert len(masks) == VAL_TILES
    assert int(ddp_confusion.sum()) == sum(int((mask != IGNORE_INDEX).sum()) for mask in masks)
    ddp_miou = segmentation_scores(ddp_confusion, CLASSES)["mIoU"]
    assert ddp_miou == segmentation_scores(single_confusion, CLASSES)["mIoU"]
    # the value the DDP run logged and monitored is that same number
    (best,) = (
        state["best_model_score"]
        for key, state in checkpoint["callbacks"].items()
        if key.startswith("ModelCheckpoint") and state.get("monitor") == "val_mIoU"
    )
    assert best.item() == np.float32(ddp_miou) == trainer.callback_metrics["val_mIoU"].item()


KD_SETTINGS = """
teacher_ckpt_path = {teacher!r}
pretrained_ckpt_path = {teacher!r}
kd_warmup_epochs = 0
kd_confidence_threshold = 0.0  # the 1-epoch teacher is not confident: keep every pixel
log_name = "tiny_kd"
"""


@pytest.mark.slow
def test_kd_under_ddp_distils_in_every_process_and_validates_exactly(ddp_run):
    workdir, data_root, _ = ddp_run
    teacher = workdir / "weights" / "last.ckpt"
    config_path = write_config(
        workdir / "kd.py", data_root=data_root, weights_path=workdir / "student", max_epoch=1
    )
    with config_path.open("a") as file:
        file.write(DDP_SETTINGS.format(data_root=data_root, val_batch=VAL_BATCH))
        file.write(KD_SETTINGS.format(teacher=str(teacher)))
    result = run_python(REPO_ROOT / "train_kd.py", "-c", config_path, cwd=workdir, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Starting with 2 processes" in result.stdout + result.stderr
    (run_dir,) = (workdir / "lightning_logs" / "tiny_kd").iterdir()
    events = EventAccumulator(str(run_dir)).Reload()
    kept = [event.value for event in events.Scalars("kd/kept_fraction")]
    assert kept == [1.0]  # 8 tiles, 2 processes x batch 4: one step
    student = workdir / "student" / "last.ckpt"
    checkpoint = read_checkpoint(student)
    assert all(key.startswith("net.") for key in checkpoint["state_dict"])  # no teacher inside
    module, _ = single_process_validation(student, data_root)
    ddp_confusion = torch.tensor(checkpoint[VALIDATION_KEY]["confusion_matrix"]["val"])
    assert torch.equal(ddp_confusion, module.last_val_confusion["val"])
