"""Initialising from checkpoints: Lightning or plain state dicts, reported mismatches, safe loading."""

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from geoseg.classes import CLASSES, PALETTE
from geoseg.errors import CheckpointError
from geoseg.models import FTUNetFormer, load_model_and_spec, save_model
from geoseg.models.checkpoint import load_pretrained_weights, read_checkpoint

LEGACY = Path(__file__).parent / "data" / "legacy"


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


@pytest.mark.parametrize("name", ["ftunetformer", "unetformer"])
def test_checkpoint_written_before_the_network_owned_its_input_predicts_the_same(name):
    """A checkpoint of the record's version 1 (normalisation beside the model arguments, no
    palette) loads, takes the raw image and gives the logits it gave then (tests/data/legacy)."""
    expected = torch.load(LEGACY / "expected.pt", weights_only=True)
    net, spec = load_model_and_spec(LEGACY / f"{name}.ckpt")
    assert spec.normalization == {"mean": [120.0, 110.0, 100.0], "std": [50.0, 55.0, 60.0]}
    assert spec.palette == PALETTE and spec.classes == CLASSES
    with torch.no_grad():
        logits = net(expected["image"])
    torch.testing.assert_close(logits, expected[f"{name}_logits"], rtol=0, atol=1e-5)


def test_records_round_trip_with_version_and_palette(tmp_path):
    net = FTUNetFormer(
        num_classes=3,
        backbone="swin_tiny_patch4_window7_224",
        backbone_kwargs=dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
        decode_channels=16,
        window_size=4,
        normalization={"mean": [1, 2, 3], "std": [4, 5, 6]},
    )
    palette = ((1, 2, 3), (4, 5, 6), (7, 8, 9))
    save_model(net, tmp_path / "m.ckpt", classes=("a", "b", "c"), ignore_index=9, palette=palette)
    record = read_checkpoint(tmp_path / "m.ckpt")["geoseg"]
    assert record["version"] == 2 and "normalization" not in record
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
