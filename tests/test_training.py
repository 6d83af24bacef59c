"""The supervised stage end to end on tiny data: checkpoints, TensorBoard, resume, load_model."""

import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from geoseg.config import load_config
from geoseg.datasets import PALETTE
from geoseg.losses import DiceLoss
from geoseg.models import load_model_and_spec
from geoseg.models.checkpoint import read_checkpoint
from geoseg.training import train

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
