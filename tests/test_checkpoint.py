"""Initialising from checkpoints: Lightning or plain state dicts, reported mismatches, safe loading."""

import logging

import pytest
import torch
from torch import nn

from geoseg.classes import CLASSES
from geoseg.errors import CheckpointError
from geoseg.models import load_model, load_model_and_spec, save_model
from geoseg.models.initialise import load_pretrained_weights
from geoseg.models.weight_files import read_checkpoint
from geoseg.training.resume import check_resume_checkpoint

from conftest import tiny_ftunetformer


class Tiny(nn.Module):
    def __init__(self, out_channels=3):
        super().__init__()
        self.backbone = nn.Conv2d(3, 4, 1)
        self.head = nn.Conv2d(4, out_channels, 1)


def test_lightning_checkpoint_loads_net_weights(tmp_path):
    source = Tiny()
    state = {f"net.{k}": v for k, v in source.state_dict().items()}
    state["loss.class_weights"] = torch.ones(3)  # another submodule of the LightningModule
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "last.ckpt")
    target = Tiny()
    report = load_pretrained_weights(target, tmp_path / "last.ckpt")
    assert report == {"missing": [], "unexpected": [], "mismatched": []}
    assert torch.equal(target.head.weight, source.head.weight)


def test_partial_weights_are_reported_not_dropped_silently(tmp_path, caplog):
    source = Tiny(out_channels=5)  # a head for another class count
    state = dict(source.state_dict(), extra=torch.zeros(1))
    del state["backbone.bias"]
    torch.save(state, tmp_path / "plain.pth")
    target = Tiny(out_channels=3)
    with caplog.at_level(logging.WARNING):
        report = load_pretrained_weights(target, tmp_path / "plain.pth")
    assert report == {
        "missing": ["backbone.bias"],
        "unexpected": ["extra"],
        "mismatched": ["head.bias", "head.weight"],
    }
    assert torch.equal(target.backbone.weight, source.backbone.weight)
    assert "1 of 4 weights loaded" in caplog.text and "head.weight" in caplog.text


def test_no_matching_weight_is_an_error(tmp_path):
    torch.save({"something.else": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: none of its 1 weights match"):
        load_pretrained_weights(Tiny(), tmp_path / "other.pth")


class Payload:
    """An arbitrary object: a weights-only load must refuse to unpickle it."""


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"state_dict": {}, "payload": Payload()}, tmp_path / "unsafe.ckpt")
    with pytest.raises(
        CheckpointError, match="unsafe.ckpt: not a readable weights-only checkpoint"
    ):
        read_checkpoint(tmp_path / "unsafe.ckpt")


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="gone.ckpt: checkpoint file not found"):
        read_checkpoint(tmp_path / "gone.ckpt")


def test_checkpoint_of_the_earlier_architecture_is_refused_naming_its_version(tmp_path, caplog):
    """Records before version 3 hold this project's earlier decoder and Swin (architecture 1):
    loading or initialising from them is refused, with the version named."""
    net = tiny_ftunetformer()
    save_model(net, tmp_path / "old.ckpt", classes=CLASSES, ignore_index=255)
    checkpoint = read_checkpoint(tmp_path / "old.ckpt")
    checkpoint["geoseg"]["version"] = 2  # as the earlier release wrote it
    del checkpoint["geoseg"]["architecture_version"]
    # the marks of a training checkpoint, as a resumable run of that release had them
    checkpoint.update({"pytorch-lightning_version": "2.0.0", "optimizer_states": [], "loops": {}})
    torch.save(checkpoint, tmp_path / "old.ckpt")
    message = (
        r"old\.ckpt: holds a FTUNetFormer of architecture version 1; this release builds version 2"
    )
    with pytest.raises(CheckpointError, match=message):
        load_model_and_spec(tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match=message):
        load_pretrained_weights(net, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="resume_ckpt_path .*architecture version 1"):
        check_resume_checkpoint(tmp_path / "old.ckpt", net, CLASSES)


def test_records_round_trip_with_version_and_palette(tmp_path):
    net = tiny_ftunetformer(num_classes=3, normalization={"mean": [1, 2, 3], "std": [4, 5, 6]})
    palette = ((1, 2, 3), (4, 5, 6), (7, 8, 9))
    save_model(net, tmp_path / "m.ckpt", classes=("a", "b", "c"), ignore_index=9, palette=palette)
    record = read_checkpoint(tmp_path / "m.ckpt")["geoseg"]
    assert record["version"] == 3 and record["architecture_version"] == 2
    assert "normalization" not in record
    assert record["model_kwargs"]["normalization"] == {
        "mean": [1.0, 2.0, 3.0],
        "std": [4.0, 5.0, 6.0],
    }
    _, spec = load_model_and_spec(tmp_path / "m.ckpt")
    assert spec.palette == palette and spec.ignore_index == 9 and spec.classes == ("a", "b", "c")


def test_a_newer_record_is_refused_with_its_version(tmp_path):
    torch.save({"state_dict": {}, "geoseg": {"version": 99}}, tmp_path / "new.ckpt")
    with pytest.raises(CheckpointError, match="model record version 99 is newer"):
        load_model_and_spec(tmp_path / "new.ckpt")


def test_a_checkpoint_with_a_nan_weight_is_refused_naming_the_tensor(tmp_path):
    path = tmp_path / "nan.ckpt"
    save_model(tiny_ftunetformer().eval(), path, classes=CLASSES, ignore_index=255)
    checkpoint = torch.load(path, weights_only=True)
    state = checkpoint["state_dict"]
    state["net.decoder.head.2.weight"].view(-1)[3] = float("nan")
    state["net.decoder.head.0.1.running_var"][0] = float("inf")  # a buffer counts too
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError) as error:
        load_model(path)
    assert str(error.value) == (
        f"{path}: non-finite weights (NaN or inf) in decoder.head.0.1.running_var, "
        "decoder.head.2.weight: the checkpoint is unusable; use an earlier one "
        "(e.g. the -best.ckpt) or retrain"
    )
