"""The supervised stage end to end on tiny data: checkpoints, TensorBoard, resume, load_model, and
step 0 on weak labels handing its weights to step 1."""

import json
from pathlib import Path

import cv2
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from geoseg.config import load_config
from geoseg.datasets import IGNORE_INDEX, PALETTE
from geoseg.losses import DiceLoss
from geoseg.models import load_model_and_spec
from geoseg.models.checkpoint import extract_state_dict, read_checkpoint
from geoseg.training import SupervisedModule, train
from geoseg.training.supervised import VALIDATION_KEY

from conftest import REPO_ROOT, run_python, write_config

STEPS_PER_EPOCH = 2  # 8 Train tiles, batch 4, drop_last


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory):
    """Two epochs of the tiny config, run in-process from a temporary working directory."""
    workdir = tmp_path_factory.mktemp("train")
    config_path = write_config(
        workdir / "tiny.py", data_root=synthetic_root, weights_path=workdir / "weights"
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        torch.manual_seed(0)
        trainer, module = train(load_config(config_path))
    return workdir, config_path, trainer, module


def test_writes_last_and_best_checkpoints(trained):
    workdir, _, _, _ = trained
    last = read_checkpoint(workdir / "weights" / "last.ckpt")
    assert (workdir / "weights" / "best.ckpt").is_file()
    assert last["epoch"] == 1  # 0-based: two epochs ran
    assert last["global_step"] == 2 * STEPS_PER_EPOCH
    assert last["geoseg"]["model_class"] == "FTUNetFormer"
    assert last["geoseg"]["classes"][1] == "forest"


def test_tensorboard_has_losses_metrics_and_pictures(trained):
    workdir = trained[0]
    (run_dir,) = (workdir / "lightning_logs" / "tiny").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train_loss_step", "train_loss_epoch", "val_loss", "val_mIoU", "val_mF1", "val_OA"):
        assert tag in scalars, tag
    assert any(tag.startswith("val_IoU/") for tag in scalars)
    assert any(tag.startswith("lr-") for tag in scalars)
    assert len(events.Scalars("val_mIoU")) == 2
    assert 0.0 <= events.Scalars("val_mIoU")[-1].value <= 1.0
    (picture,) = events.Images("val_predictions")[-1:]
    assert picture.width == 3 * 32 and picture.height == 4 * 32  # image | gt | pred, 4 rows


def test_load_model_predicts_like_the_trained_module(trained, synthetic_root):
    workdir, _, _, module = trained
    net, spec = load_model_and_spec(workdir / "weights" / "last.ckpt")
    assert not net.training and spec.num_classes == 6 and spec.palette == PALETTE
    batch = torch.rand(2, 3, 40, 56) * 255
    module.net.eval()
    with torch.no_grad():
        assert torch.equal(net(batch), module.net(batch))


def test_cli_resumes_from_last_checkpoint_at_the_next_epoch(trained, synthetic_root):
    workdir, _, _, _ = trained
    last = workdir / "weights" / "last.ckpt"
    before = read_checkpoint(last)
    config_path = write_config(
        workdir / "resume.py",
        data_root=synthetic_root,
        weights_path=workdir / "weights",
        max_epoch=3,
        resume_ckpt_path=str(last),
    )
    result = run_python(
        REPO_ROOT / "train_supervision.py", "-c", config_path, cwd=workdir, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Restoring states from the checkpoint" in result.stderr + result.stdout
    after = read_checkpoint(last)
    assert after["epoch"] == 2  # only the third epoch ran
    assert after["global_step"] == 3 * STEPS_PER_EPOCH
    optimizer_steps = after["optimizer_states"][0]["state"][0]["step"]
    assert optimizer_steps.item() == 3 * STEPS_PER_EPOCH  # the optimizer state was restored too
    assert before["optimizer_states"][0]["state"][0]["step"].item() == 2 * STEPS_PER_EPOCH


def test_a_plain_loss_in_a_config_trains(synthetic_root, tmp_path, monkeypatch):
    """Any (logits, target) -> scalar loss works: the network's forward returns logits alone."""
    config_path = write_config(
        tmp_path / "dice.py", data_root=synthetic_root, weights_path=tmp_path / "w"
    )
    text = config_path.read_text().replace(
        "loss = CEDiceLoss(ignore_index=ignore_index)", "loss = DiceLoss(ignore_index=255)"
    )
    config_path.write_text(text.replace("import CEDiceLoss", "import CEDiceLoss, DiceLoss"))
    monkeypatch.chdir(tmp_path)
    config = load_config(config_path, overrides={"log_name": "dice"})
    trainer, module = train(config)
    assert trainer.current_epoch == 2 and trainer.global_step == 2 * STEPS_PER_EPOCH
    assert isinstance(module.loss, DiceLoss)
    # the auxiliary head that no loss term reaches is frozen (DDP would stop on unused weights)
    assert not any(p.requires_grad for p in module.net.decoder.aux_head.parameters())
    assert torch.isfinite(trainer.callback_metrics["train_loss_epoch"])


def test_the_old_normalization_name_is_accepted_when_it_agrees_with_the_network(
    synthetic_root, tmp_path
):
    from geoseg.errors import ConfigError
    from geoseg.training import SupervisedModule

    config_path = write_config(tmp_path / "old.py", data_root=synthetic_root, weights_path=tmp_path)
    base = config_path.read_text() + "\nfrom geoseg.datasets import IMAGENET_NORMALIZATION\n"
    config_path.write_text(base + "normalization = IMAGENET_NORMALIZATION\n")
    SupervisedModule.from_config(load_config(config_path))
    config_path.write_text(base + "normalization = {'mean': (0, 0, 0), 'std': (1, 1, 1)}\n")
    with pytest.raises(ConfigError, match="old.py: normalization=.*differs from the network's own"):
        SupervisedModule.from_config(load_config(config_path))


# --- step 0: weak labels, then the hand-off to step 1 ---------------------------------------------


def write_weak_labels(root: Path) -> Path:
    """Weak labels as the demo makes them: a synthetic georeferenced scene and its OpenStreetMap
    file (omissions, shifted and simplified outlines, roads as tagged lines) through map_labels'
    rasterisation into 32 px training tiles under ``root``/map_labels."""
    from geoseg.datasets.synthetic_maps import write_map_scenes
    from geoseg.maplabels.job import MapLabelSettings, make_map_labels
    from geoseg.maplabels.tiles import TileSettings

    write_map_scenes(root / "map_scenes", scenes=1, size=128, seed=2)
    summary = make_map_labels(
        MapLabelSettings(
            scenes=root / "map_scenes" / "images",
            map_data=root / "map_scenes" / "map.osm",
            tags=REPO_ROOT / "config" / "map_tags.py",
            output_root=root / "map_labels",
            tiles=TileSettings(tile_size=32),
        )
    )
    assert summary["tiles_kept"] >= 8  # at least two batches of 4
    return root / "map_labels"


def weak_label_steps(workdir: Path) -> int:
    """Step 0's optimiser steps per epoch: its kept tiles in batches of 4, the last one dropped."""
    return json.loads((workdir / "map_labels" / "summary.json").read_text())["tiles_kept"] // 4


@pytest.fixture(scope="module")
def step0_then_step1(synthetic_root, tmp_path_factory):
    """Step 0 (2 epochs, truncation after 1) on weak labels, validated on the target's Val; then
    step 1 initialised from its last.ckpt. Returns the folder, step 1's config, the calls of step
    0's loss (epoch, training, share dropped) and step 1's weights when its module was built."""
    workdir = tmp_path_factory.mktemp("step0")
    weak = write_weak_labels(workdir)
    step0_config = write_config(
        workdir / "step0.py", data_root=weak, weights_path=workdir / "step0", aux_head=False
    )
    text = step0_config.read_text()
    text = text.replace(
        f'TargetDataset("{weak}", "Val")', f'TargetDataset("{synthetic_root}", "Val")'
    )
    text = text.replace("import CEDiceLoss", "import TruncatedCrossEntropyLoss")
    text = text.replace(
        "loss = CEDiceLoss(ignore_index=ignore_index)",
        "loss = TruncatedCrossEntropyLoss(drop_fraction=0.25, warmup_epochs=1)",
    )
    step0_config.write_text(text)
    step1_config = write_config(
        workdir / "step1.py",
        data_root=synthetic_root,
        weights_path=workdir / "step1",
        max_epoch=1,
        aux_head=False,
    )
    with step1_config.open("a") as file:
        file.write(f"pretrained_ckpt_path = {str(workdir / 'step0' / 'last.ckpt')!r}\n")

    calls, initial = [], {}

    class SpiedModule(SupervisedModule):
        @classmethod
        def from_config(cls, config, **kwargs):
            initial.update({k: v.clone() for k, v in config.net.state_dict().items()})
            return super().from_config(config, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        torch.manual_seed(0)
        config = load_config(step0_config, overrides={"log_name": "step0"})
        assert config.train_loader.dataset.data_root == weak
        config.loss.register_forward_hook(
            lambda loss, inputs, output: calls.append(
                (loss.epoch, loss.training, loss.active_drop_fraction)
            )
        )
        train(config)
        torch.manual_seed(1)
        train(load_config(step1_config, overrides={"log_name": "step1"}), SpiedModule)
    return workdir, step1_config, calls, initial


@pytest.mark.slow  # the step 0 -> step 1 fixture trains two runs (about 30 s)
def test_step_0_truncates_after_its_warm_up_and_validates_with_plain_ce(
    step0_then_step1, synthetic_root
):
    workdir, _, calls, _ = step0_then_step1
    steps = weak_label_steps(workdir)
    training = [(epoch, dropped) for epoch, is_training, dropped in calls if is_training]
    assert training == [(0, 0.0)] * steps + [(1, 0.25)] * steps
    assert {dropped for _, is_training, dropped in calls if not is_training} == {0.0}
    last = read_checkpoint(workdir / "step0" / "last.ckpt")
    assert last["epoch"] == 1 and last["global_step"] == 2 * steps
    # validated on the target's Val: the confusion matrix counts its labelled pixels
    confusion = torch.tensor(last[VALIDATION_KEY]["confusion_matrix"]["val"])
    masks = (synthetic_root / "Val" / "masks_png").glob("*.png")
    labelled = sum(
        int((cv2.imread(str(m), cv2.IMREAD_UNCHANGED) != IGNORE_INDEX).sum()) for m in masks
    )
    assert confusion.sum().item() == labelled


@pytest.mark.slow  # the step 0 -> step 1 fixture trains two runs (about 30 s)
def test_step_1_starts_from_step_0s_last_checkpoint(step0_then_step1):
    workdir, _, _, initial = step0_then_step1
    step0 = extract_state_dict(read_checkpoint(workdir / "step0" / "last.ckpt"))
    assert initial.keys() == step0.keys()
    for key, value in step0.items():
        assert torch.equal(initial[key], value), key
    step1 = extract_state_dict(read_checkpoint(workdir / "step1" / "last.ckpt"))
    assert any(not torch.equal(step1[key], step0[key]) for key in step0)  # and then trained


@pytest.mark.slow
def test_cli_step_1_reports_every_weight_loaded_from_step_0(step0_then_step1):
    workdir, step1_config, _, _ = step0_then_step1
    result = run_python(
        REPO_ROOT / "train_supervision.py",
        "-c",
        step1_config,
        "--set",
        f"weights_path={workdir / 'step1_cli'}",
        cwd=workdir,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    step0 = workdir / "step0" / "last.ckpt"
    count = len(extract_state_dict(read_checkpoint(step0)))
    loaded = f"initialised FTUNetFormer from {step0}: {count} of {count} weights loaded; 0 missing"
    assert loaded in result.stderr + result.stdout
