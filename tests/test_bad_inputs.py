"""ensemble_inference.py refuses bad values where they enter: one line, exit 2, nothing written."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.errors import CheckpointError
from geoseg.hardware import resolve_device
from geoseg.inference import parse_scales
from geoseg.models import UNetFormer, load_model_and_spec, save_model

from conftest import REPO_ROOT

SCRIPT = str(REPO_ROOT / "ensemble_inference.py")
# a GPU this machine lacks: any CUDA on a machine without it, else one past the last index
MISSING_GPU = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def tiny_net(num_classes: int = len(CLASSES)) -> UNetFormer:
    torch.manual_seed(0)
    return UNetFormer(
        num_classes=num_classes, backbone="resnet18", decode_channels=16, window_size=4
    ).eval()


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """(inputs folder, good checkpoint, folder for more checkpoints)."""
    root = tmp_path_factory.mktemp("bad_inputs")
    inputs = root / "in"
    inputs.mkdir()
    image = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    cv2.imwrite(str(inputs / "tile.png"), image)
    good = root / "good.ckpt"
    save_model(tiny_net(), good, classes=CLASSES, ignore_index=IGNORE_INDEX)
    return inputs, good, root


def edited(good, path, **record):
    """A copy of the checkpoint ``good`` whose model record has ``record``'s entries instead."""
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["geoseg"].update(record)
    torch.save(checkpoint, path)
    return path


def assert_refused(setup, tmp_path, value, *flags, checkpoints=None):
    inputs, good, _ = setup
    output = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, SCRIPT, "--num-workers", "0", "--input-dir", str(inputs)]
        + ["--output-dir", str(output), "--scales", "1.0", "--flips", "none"]
        + ["--checkpoints", *map(str, checkpoints or [good]), *flags],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1, result.stderr
    assert value in lines[0]
    assert not output.exists() or not any(output.iterdir())
    return lines[0]


def test_scales_and_devices_are_checked_in_the_library():
    assert parse_scales("0.5,1,8") == (0.5, 1.0, 8.0)
    for text in ("nan", "inf", "8.01", "0", "1e9"):
        with pytest.raises(ValueError, match="a scale must be a finite factor in \\(0, 8\\]"):
            parse_scales(text)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for text in ("tpu", "cuda:x", "cuda:-1", "CPU", MISSING_GPU):
        with pytest.raises(ValueError, match=f"device '{text}'"):
            resolve_device(text)


def test_checkpoint_records_are_checked_at_load(tmp_path):
    net = UNetFormer(num_classes=2, backbone="resnet18", decode_channels=16, window_size=4)
    good = tmp_path / "good.ckpt"
    save_model(net, good, classes=("x", "y"), ignore_index=255)
    assert load_model_and_spec(good)[1].classes == ("x", "y")
    with pytest.raises(CheckpointError, match="3 classes but the network's head predicts 2"):
        load_model_and_spec(edited(good, tmp_path / "a.ckpt", classes=["x", "y", "z"]))
    with pytest.raises(CheckpointError, match="palette has 1 colours for 2 classes"):
        load_model_and_spec(edited(good, tmp_path / "b.ckpt", palette=[[1, 2, 3]]))
    old = edited(good, tmp_path / "old.ckpt", palette=[])  # records without a palette: default
    assert len(load_model_and_spec(old)[1].palette) == 2


@pytest.mark.parametrize(
    ("flag", "value", "expected"),
    [
        ("--scales", "nan", "'nan': a scale must be a finite factor in (0, 8]"),
        ("--scales", "1.0,inf", "'inf': a scale must be a finite factor in (0, 8]"),
        ("--scales", "1e9", "'1e9': a scale must be a finite factor in (0, 8]"),
        ("--scales", "0", "'0': a scale must be a finite factor in (0, 8]"),
        ("--scales", "-1", "'-1': a scale must be a finite factor in (0, 8]"),
        ("--device", "tpu", "expected auto, cpu, cuda or cuda:N"),
        ("--device", "cuda:x", "expected auto, cpu, cuda or cuda:N"),
        ("--device", MISSING_GPU, MISSING_GPU),
        ("--device", "cuda:99", "cuda:99"),
        ("--num-workers", "-1", "expected an integer of at least 0"),
        ("--batch-size", "0", "expected an integer of at least 1"),
        ("--batch-size", "-1", "expected an integer of at least 1"),
    ],
)
@pytest.mark.slow
def test_bad_flag_values_are_one_line_errors(setup, tmp_path, flag, value, expected):
    line = assert_refused(setup, tmp_path, value, flag, value)
    assert flag in line and expected in line


@pytest.mark.slow
def test_members_with_different_ignore_ids_are_refused(setup, tmp_path):
    _, good, root = setup
    other = root / "ignore6.ckpt"
    save_model(tiny_net(), other, classes=CLASSES, ignore_index=len(CLASSES))
    line = assert_refused(setup, tmp_path, "ignore6.ckpt", checkpoints=[good, other])
    assert f"ignore id {len(CLASSES)}" in line and f"ignore id {IGNORE_INDEX}" in line


@pytest.mark.slow
def test_class_names_that_do_not_fit_the_head_are_refused(setup, tmp_path):
    _, good, root = setup
    wrong = edited(good, root / "two_names.ckpt", classes=["a", "b"])
    line = assert_refused(setup, tmp_path, "two_names.ckpt", checkpoints=[wrong])
    assert f"names 2 classes but the network's head predicts {len(CLASSES)}" in line


@pytest.mark.slow
def test_a_palette_short_of_colours_is_refused(setup, tmp_path):
    _, good, root = setup
    wrong = edited(good, root / "two_colours.ckpt", palette=[[0, 0, 0], [255, 255, 255]])
    line = assert_refused(setup, tmp_path, "two_colours.ckpt", checkpoints=[wrong])
    assert f"palette has 2 colours for {len(CLASSES)} classes" in line
