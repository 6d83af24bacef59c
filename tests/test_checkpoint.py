"""Initialising from checkpoints: Lightning or plain state dicts, reported mismatches, safe loading."""

import logging

import pytest
import torch
from torch import nn

from geoseg.errors import CheckpointError
from geoseg.utils.checkpoint import load_pretrained_weights, read_checkpoint


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
