"""The command-line entry points refuse bad values where they enter: one line naming the value,
exit 2, no traceback, nothing written."""

import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from geoseg.config import load_config
from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.errors import CheckpointError, ConfigError
from geoseg.hardware import resolve_device
from geoseg.inference import parse_scales
from geoseg.models import UNetFormer, load_model_and_spec, save_model

from conftest import REPO_ROOT, tiny_unetformer, write_config

SCRIPT = str(REPO_ROOT / "ensemble_inference.py")
# a GPU this machine lacks: any CUDA on a machine without it, else one past the last index
MISSING_GPU = f"cuda:{torch.cuda.device_count()}" if torch.cuda.is_available() else "cuda"


def tiny_net(num_classes: int = len(CLASSES)) -> UNetFormer:
    torch.manual_seed(0)
    return tiny_unetformer(num_classes).eval()


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
    net = tiny_unetformer(2)
    good = tmp_path / "good.ckpt"
    save_model(net, good, classes=("x", "y"), ignore_index=255)
    assert load_model_and_spec(good)[1].classes == ("x", "y")
    with pytest.raises(CheckpointError, match="3 classes but the network's head predicts 2"):
        load_model_and_spec(edited(good, tmp_path / "a.ckpt", classes=["x", "y", "z"]))
    with pytest.raises(CheckpointError, match="palette has 1 colours for 2 classes"):
        load_model_and_spec(edited(good, tmp_path / "b.ckpt", palette=[[1, 2, 3]]))
    old = edited(good, tmp_path / "old.ckpt", palette=[])  # records without a palette: default
    assert len(load_model_and_spec(old)[1].palette) == 2
    kwargs = {**load_model_and_spec(good)[1].model_kwargs, "frobnicate": 3}
    with pytest.raises(CheckpointError, match="gives UNetFormer arguments it does not take: frob"):
        load_model_and_spec(edited(good, tmp_path / "c.ckpt", model_kwargs=kwargs))


def test_backbone_names_timm_does_not_know_are_refused_with_close_matches():
    with pytest.raises(ConfigError, match="backbone 'resnet81': not a model timm knows; did you "):
        UNetFormer(num_classes=2, backbone="resnet81")


def test_precision_names_are_checked_in_the_config(tmp_path, synthetic_root):
    config = write_config(tmp_path / "c.py", data_root=synthetic_root, weights_path=tmp_path / "w")
    assert load_config(config, overrides={"precision": "bf16-mixed"}).precision == "bf16-mixed"
    with pytest.raises(ConfigError, match="precision 'fp8': expected None .automatic. or one of"):
        load_config(config, overrides={"precision": "fp8"})


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


def run_refused(command: list, value: str, cwd, unchanged: list | None = None) -> str:
    """Run ``command``; assert it is refused in one line naming ``value`` (exit 2, no
    traceback) and that the folder ``cwd`` and the files ``unchanged`` are as they were."""
    unchanged = unchanged or []
    before = sorted(cwd.rglob("*")), [path.read_bytes() for path in unchanged]
    result = subprocess.run(
        [sys.executable, *map(str, command)], capture_output=True, text=True, timeout=300, cwd=cwd
    )
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert len(lines) == 1 and value in lines[0], result.stderr
    assert (sorted(cwd.rglob("*")), [path.read_bytes() for path in unchanged]) == before
    return lines[0]


@pytest.fixture
def workdir(tmp_path, synthetic_root):
    """A folder holding a file, a checkpoint of weights alone and a tiny training config."""
    (tmp_path / "a_file").write_text("not a folder")
    save_model(tiny_net(), tmp_path / "weights.ckpt", classes=CLASSES, ignore_index=IGNORE_INDEX)
    write_config(tmp_path / "tiny.py", data_root=synthetic_root, weights_path=tmp_path / "run")
    return tmp_path


@pytest.mark.slow
@pytest.mark.parametrize(
    ("command", "value", "expected"),
    [
        (
            ["create_combined_dataset.py", "--num-oem-train", "-5"],
            "'-5'",
            "argument --num-oem-train: '-5': expected an integer of at least 0",
        ),
        (
            ["create_combined_dataset.py", "--target-root", "{root}", "--oem-root", "{root}"]
            + ["--output-root", "a_file/combined"],
            "a_file",
            "a_file is a file, not a folder; choose another --output-root",
        ),
        (
            ["ensemble_inference.py", "--input-dir", ".", "--output-dir", "a_file"]
            + ["--checkpoints", "weights.ckpt"],
            "a_file",
            "--output-dir a_file: a_file is a file, not a folder",
        ),
        (
            ["pseudo_label.py", "--input-dir", ".", "--output-root", "a_file/labels"]
            + ["--checkpoints", "weights.ckpt"],
            "a_file",
            "--output-root a_file/labels: a_file is a file, not a folder",
        ),
        (
            ["export_model.py", "weights.ckpt", "--output", "."],
            "--output .",
            "is a folder; give the file to write",
        ),
        (
            ["export_model.py", "weights.ckpt", "--tile-size", "0"],
            "'0'",
            "argument --tile-size: '0': expected an integer of at least 1",
        ),
        (
            ["evaluation/select_ensemble.py", "--checkpoints", "weights.ckpt", "--val-dir", "."]
            + ["--output", "s.json", "--rounds", "0"],
            "'0'",
            "argument --rounds: '0': expected an integer of at least 1",
        ),
        (
            ["train_supervision.py", "-c", "tiny.py", "--set", "precision=fp8"],
            "'fp8'",
            "precision 'fp8': expected None (automatic) or one of 32-true,",
        ),
        (
            ["train_supervision.py", "-c", "tiny.py", "--set", "resume_ckpt_path=weights.ckpt"],
            "weights.ckpt",
            "not a training checkpoint (it lacks the optimizer and loop state",
        ),
    ],
)
def test_entry_points_refuse_bad_values_in_one_line(
    workdir, synthetic_root, command, value, expected
):
    script, *flags = command
    flags = [flag.replace("{root}", str(synthetic_root)) for flag in flags]
    line = run_refused([REPO_ROOT / script, *flags], value, workdir, [workdir / "weights.ckpt"])
    assert expected in line


@pytest.mark.slow
def test_the_importer_refuses_a_backbone_timm_does_not_know(workdir):
    source = REPO_ROOT / "tests" / "data" / "geoseg" / "unetformer_geoseg.ckpt"
    command = ["-m", "geoseg.models.import_geoseg", source, "out.ckpt", "--backbone", "resnet81"]
    line = run_refused(command, "resnet81", workdir)
    assert "did you mean resnet18" in line


@pytest.mark.slow
def test_a_stage_refuses_a_weights_path_holding_another_runs_checkpoints(workdir):
    """Unless it resumes them: another run's last.ckpt and -best files would be overwritten or
    mixed with this run's."""
    (workdir / "run").mkdir()
    earlier = workdir / "run" / "last.ckpt"
    earlier.write_bytes(b"an earlier run's checkpoint")
    line = run_refused([REPO_ROOT / "train_supervision.py", "-c", "tiny.py"], "last.ckpt", workdir)
    assert f"weights_path {workdir / 'run'}: holds an earlier run's checkpoints" in line
    assert "--set resume_ckpt_path=auto" in line
