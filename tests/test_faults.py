"""Faults: killed runs, non-finite losses, bad input, unsafe checkpoints and links (issue 8).

One test (or one parametrised case) per failure a user can meet; each checks that the run keeps or
resumes its work, or stops with a message naming the file, the value and what was expected.
"""

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import timm
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch.utils.data import DataLoader

from geoseg.cli import run_script
from geoseg.config import load_config
from geoseg.datasets import (
    CLASSES,
    TargetDataset,
    colorize_mask,
)
from geoseg.datasets.combine import CombineSettings, build_combined_dataset, plan_combined_dataset
from geoseg.datasets.io import read_image
from geoseg.datasets.synthetic import write_openearthmap_release, write_target_dataset
from geoseg.errors import CheckpointError, ConfigError, DataError, TrainingError
from geoseg.files import temporary_name
from geoseg.inference import find_inputs
from geoseg.models import FTUNetFormer, load_model
from geoseg.models.checkpoint import read_checkpoint
from geoseg.models.initialise import load_pretrained_weights
from geoseg.training import build_trainer, train
from geoseg.training.callbacks import AtomicCheckpointIO, NonFiniteGuard
from geoseg.training.kd import load_teacher

from conftest import (
    REPO_ROOT,
    TINY_SWIN,
    TINY_SWIN_KWARGS,
    save,
    tiny_ftunetformer,
    tiny_unetformer,
    write_config,
)

TRAIN = str(REPO_ROOT / "train_supervision.py")


def tiny_net(num_classes: int = len(CLASSES), decode_channels: int = 16) -> FTUNetFormer:
    """The network of conftest.TINY_CONFIG."""
    return tiny_ftunetformer(num_classes, decode_channels=decode_channels, aux_head=True)


def tiny_config(path: Path, extra: str = "", batch_size: int = 4, **values) -> Path:
    """conftest's tiny config, with another training batch size and extra lines appended."""
    write_config(path, **values)
    text = path.read_text().replace("batch_size=4, shuffle", f"batch_size={batch_size}, shuffle")
    path.write_text(text + textwrap.dedent(extra))
    return path


def run_train(config: Path, cwd: Path, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, TRAIN, "-c", str(config)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def error_line(result: subprocess.CompletedProcess) -> str:
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    return line


# --- 1. interruption: atomic checkpoints, step checkpoints, resume after SIGKILL ----------------


def test_failed_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "w": torch.arange(4.0)}, path)
    real_save = torch.save

    def disk_full_midway(obj, file, *args, **kwargs):
        real_save({"w": torch.zeros(8)}, file)  # half written
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_midway)
    with pytest.raises(CheckpointError, match="last.ckpt: could not write.*No space left"):
        io.save_checkpoint({"global_step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    kept = read_checkpoint(path)
    assert kept["global_step"] == 1 and torch.equal(kept["w"], torch.arange(4.0))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary left


WRITER = """
import sys, torch
from geoseg.training.callbacks import AtomicCheckpointIO
io, step = AtomicCheckpointIO(), 0
while True:
    step += 1
    io.save_checkpoint({"global_step": step, "w": torch.full((2_000_000,), float(step))}, sys.argv[1])
"""


@pytest.mark.slow
def test_sigkill_during_checkpoint_writes_leaves_a_whole_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path)], cwd=REPO_ROOT, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 60
    while not path.exists() and time.monotonic() < deadline and writer.poll() is None:
        time.sleep(0.01)
    time.sleep(0.3)  # several more writes: the kill lands in one of them
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    checkpoint = read_checkpoint(path)
    assert checkpoint["global_step"] > 1
    assert torch.all(checkpoint["w"] == checkpoint["global_step"])  # whole, not mixed
    # At most the hidden temporary of the interrupted write is left; the next write deletes it.
    assert len([p for p in tmp_path.iterdir() if p.name != "last.ckpt"]) <= 1
    AtomicCheckpointIO().save_checkpoint({"global_step": 0}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


@pytest.mark.slow
def test_sigkill_mid_epoch_resumes_at_the_saved_step(tmp_path):
    data = write_target_dataset(tmp_path / "data", {"Train": 24, "Val": 2}, tile_size=32, seed=3)
    steps_per_epoch = 12  # 24 tiles, batch 2
    weights = tmp_path / "weights"
    extra = "checkpoint_every_n_steps = 2\n"
    config = tiny_config(
        tmp_path / "run.py", extra, batch_size=2, data_root=data, weights_path=weights
    )
    last = weights / "last.ckpt"
    run = subprocess.Popen(
        [sys.executable, TRAIN, "-c", str(config)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and run.poll() is None:
        if last.exists() and read_checkpoint(last)["global_step"] >= 2:
            break
        time.sleep(0.02)
    run.send_signal(signal.SIGKILL)
    run.wait()

    saved = read_checkpoint(last)
    step = saved["global_step"]
    assert saved["epoch"] == 0 and 0 < step < steps_per_epoch, "not killed mid-epoch"
    assert step % 2 == 0  # a step checkpoint
    assert saved["optimizer_states"][0]["state"][0]["step"].item() == step
    assert saved["lr_schedulers"][0]["last_epoch"] == 0

    resume = tiny_config(
        tmp_path / "resume.py",
        extra,
        batch_size=2,
        data_root=data,
        weights_path=weights,
        resume_ckpt_path=str(last),
    )
    result = run_train(resume, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Restoring states from the checkpoint" in result.stdout + result.stderr
    final = read_checkpoint(last)
    assert final["epoch"] == 1 and final["global_step"] == 2 * steps_per_epoch
    # The optimizer and the schedule went on from the saved state, not from scratch.
    assert final["optimizer_states"][0]["state"][0]["step"].item() == 2 * steps_per_epoch
    assert final["lr_schedulers"][0]["last_epoch"] == 2
    # The resumed run trained exactly the steps that were missing, starting after the saved one.
    logs = sorted((tmp_path / "lightning_logs" / "tiny").iterdir())
    events = EventAccumulator(str(logs[-1])).Reload()
    steps = [event.step for event in events.Scalars("train_loss_step")]
    assert len(steps) == 2 * steps_per_epoch - step and min(steps) >= step
    net = load_model(last)
    assert net(torch.randn(1, 3, 32, 32)).shape == (1, len(CLASSES), 32, 32)


def test_step_checkpoint_and_gradient_clipping_are_config_knobs(
    tmp_path, synthetic_root, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # the logger's folder
    extra = "checkpoint_every_n_steps = 7\ngradient_clip_val = 0.5\n"
    config = load_config(
        tiny_config(tmp_path / "c.py", extra, data_root=synthetic_root, weights_path=tmp_path / "w")
    )
    trainer = build_trainer(config)
    assert trainer.gradient_clip_val == 0.5  # clips the gradients' norm (Lightning's default)
    steps = [cb for cb in trainer.checkpoint_callbacks if cb._every_n_train_steps == 7]
    assert len(steps) == 1 and steps[0].filename == "last"
    assert isinstance(trainer.strategy.checkpoint_io, AtomicCheckpointIO)
    assert any(isinstance(cb, NonFiniteGuard) for cb in trainer.callbacks)
    config.checkpoint_every_n_steps = 0  # only after every epoch
    assert not [cb for cb in build_trainer(config).checkpoint_callbacks if cb._every_n_train_steps]
    config.checkpoint_every_n_steps = "500"
    with pytest.raises(ConfigError, match=r"c\.py: checkpoint_every_n_steps='500'"):
        build_trainer(config)


# --- 2. non-finite loss -------------------------------------------------------------------------

NAN_AT_STEP = """
class _NaNAtStep(torch.nn.Module):
    \"\"\"The config's loss, NaN at the given training step.\"\"\"

    def __init__(self, inner, step):
        super().__init__()
        self.inner, self.step, self.calls = inner, step, 0

    def forward(self, output, target):
        value = self.inner(output, target)
        if torch.is_grad_enabled():  # training, not validation
            self.calls += 1
            if self.calls == self.step:
                value = value * float("nan")
        return value


loss = _NaNAtStep(loss, 4)
checkpoint_every_n_steps = 1
"""


@pytest.mark.slow
def test_nan_loss_stops_naming_epoch_step_and_images_and_keeps_the_last_checkpoint(
    tmp_path, synthetic_root
):
    weights = tmp_path / "weights"
    config = tiny_config(
        tmp_path / "nan.py",
        NAN_AT_STEP,
        data_root=synthetic_root,
        weights_path=weights,
        max_epoch=3,
    )
    result = run_train(config, tmp_path)
    assert result.returncode == 2, result.stderr[-3000:]
    line = error_line(result)  # one line, no traceback
    # 2 steps per epoch: the 4th training step is epoch 1, batch 1, after 3 good steps.
    assert "non-finite training loss at epoch 1, batch 1 of the epoch, after 3 optimizer steps" in (
        line
    )
    ids = re.search(r"images: ([\w, ]+)\.", line).group(1).split(", ")
    assert len(ids) == 4 and set(ids) <= set(TargetDataset(synthetic_root, "Train").img_ids)
    assert f"{weights / 'last.ckpt'} keeps the last good state" in line
    kept = read_checkpoint(weights / "last.ckpt")
    assert kept["global_step"] == 3  # the step checkpoint before the NaN, not overwritten
    assert all(torch.isfinite(value).all() for value in kept["state_dict"].values())


def test_non_finite_weights_are_never_saved(tmp_path):
    guard = NonFiniteGuard(tmp_path / "last.ckpt")
    trainer = type("T", (), {"current_epoch": 2, "global_step": 40})()
    state = {"net.a": torch.ones(2), "net.b": torch.tensor([1.0, float("inf")])}
    with pytest.raises(TrainingError, match=r"non-finite weights \(net\.b\) at epoch 2"):
        guard.on_save_checkpoint(trainer, None, {"state_dict": state})
    guard.on_save_checkpoint(trainer, None, {"state_dict": {"net.a": torch.ones(2)}})


# --- 3. bad input -------------------------------------------------------------------------------


def png_bytes(array: np.ndarray, ext: str = ".png") -> bytes:
    return cv2.imencode(ext, array)[1].tobytes()


def rgb(height: int = 8, width: int = 8) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)


IDS = np.zeros((8, 8), np.uint8)
BAD_PAIRS = {
    # name: (image file bytes, image suffix, mask file bytes, expected message)
    "corrupt image": (b"\x89PNG\r\n\x1a\nnot a png", ".png", png_bytes(IDS), "unreadable or corrupt"),
    "truncated png": (png_bytes(rgb(64, 64))[:300], ".png", png_bytes(np.zeros((64, 64), np.uint8)), "unreadable or corrupt"),
    "truncated jpeg": (png_bytes(rgb(64, 64), ".jpg")[:-200], ".jpg", png_bytes(np.zeros((64, 64), np.uint8)), "truncated JPEG"),
    "empty image file": (b"", ".png", png_bytes(IDS), r"empty file \(0 bytes\)"),
    "16-bit image": (png_bytes(rgb().astype(np.uint16) * 256), ".png", png_bytes(IDS), "dtype is uint16; expected 8-bit"),
    "16-bit mask": (png_bytes(rgb()), ".png", png_bytes(IDS.astype(np.uint16)), "mask dtype is uint16; expected uint8"),
    "rgb colour mask": (png_bytes(rgb()), ".png", png_bytes(colorize_mask(IDS)), "colour-coded.*palette in geoseg/classes.py"),
    "ids out of range": (png_bytes(rgb()), ".png", png_bytes(np.full((8, 8), 9, np.uint8)), r"mask values \[9\] are not class ids; expected 0..5 or 255"),
    "size mismatch": (png_bytes(rgb(8, 8)), ".png", png_bytes(np.zeros((8, 10), np.uint8)), "mask size 10x8 differs from its image"),
}  # fmt: skip


def write_pair(root: Path, stem: str, image: bytes, suffix: str, mask: bytes) -> None:
    for folder in ("images_png", "masks_png"):
        (root / "Train" / folder).mkdir(parents=True, exist_ok=True)
    (root / "Train" / "images_png" / f"{stem}{suffix}").write_bytes(image)
    (root / "Train" / "masks_png" / f"{stem}.png").write_bytes(mask)


@pytest.mark.parametrize("case", list(BAD_PAIRS))
def test_bad_pair_is_an_error_naming_the_file(tmp_path, case):
    image, suffix, mask, expected = BAD_PAIRS[case]
    write_pair(tmp_path, "bad", image, suffix, mask)
    dataset = TargetDataset(tmp_path, "Train")
    with pytest.raises(DataError, match=rf"bad\.(png|jpg): .*{expected}"):
        dataset[0]


def test_skip_invalid_counts_and_leaves_out_bad_pairs(tmp_path, caplog):
    write_pair(tmp_path, "good", png_bytes(rgb()), ".png", png_bytes(IDS))
    for index, (image, suffix, mask, _) in enumerate(BAD_PAIRS.values()):
        write_pair(tmp_path, f"bad_{index}", image, suffix, mask)
    with caplog.at_level(logging.WARNING):
        dataset = TargetDataset(tmp_path, "Train", skip_invalid=True)
    assert dataset.img_ids == ["good"] and len(dataset.skipped) == len(BAD_PAIRS)
    assert f"skipped {len(BAD_PAIRS)} of {len(BAD_PAIRS) + 1} pairs" in caplog.text
    assert dataset[0]["img"].shape == (3, 8, 8)


def test_grey_and_rgba_images_are_converted(tmp_path):
    grey = np.full((4, 5), 77, np.uint8)
    bgra = np.dstack([np.full((4, 5), v, np.uint8) for v in (1, 2, 3, 128)])
    (tmp_path / "grey.png").write_bytes(png_bytes(grey))
    (tmp_path / "rgba.png").write_bytes(png_bytes(bgra))
    assert (read_image(tmp_path / "grey.png") == 77).all()
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [3, 2, 1]  # RGB, alpha dropped


def test_empty_or_missing_folders_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=r"Train/images_png: folder not found.*Expected the layout"):
        TargetDataset(tmp_path, "Train")
    (tmp_path / "Train" / "images_png").mkdir(parents=True)
    (tmp_path / "Train" / "masks_png").mkdir()
    with pytest.raises(DataError, match=r"Train/images_png: no images found"):
        TargetDataset(tmp_path, "Train")
    with pytest.raises(DataError, match=r"images_png: no input images \(\.png, \.jpg, \.tif\)"):
        find_inputs(tmp_path / "Train" / "images_png")  # ensemble_inference.py --input-dir


def test_bad_tile_in_a_dataloader_worker_prints_one_line(tmp_path, capsys):
    write_pair(tmp_path, "bad", b"garbage", ".png", png_bytes(IDS))
    loader = DataLoader(TargetDataset(tmp_path, "Train"), num_workers=1)
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: next(iter(loader)))
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message.count("\n") == 0, message
    assert message.startswith("error: ") and "bad.png: unreadable or corrupt" in message
    assert "Traceback" not in message


def test_config_missing_a_name_or_with_a_typo(tmp_path, synthetic_root):
    config = tiny_config(tmp_path / "c.py", data_root=synthetic_root, weights_path=tmp_path / "w")
    text = config.read_text()
    config.write_text(text.replace("max_epoch =", "max_epochs ="))
    with pytest.raises(ConfigError, match="missing required names: max_epoch.*did you mean"):
        load_config(config)
    config.write_text(text + "checkpoint_every_n_step = 100\n")
    with pytest.raises(ConfigError, match="did you mean 'checkpoint_every_n_steps'"):
        load_config(config)


def test_resume_from_another_architecture_or_class_count_is_a_clear_error(tmp_path, synthetic_root):
    def resume_from(checkpoint: Path):
        config = tiny_config(
            tmp_path / "c.py",
            data_root=synthetic_root,
            weights_path=tmp_path / "w",
            resume_ckpt_path=str(checkpoint),
        )
        return train(load_config(config))  # fails before Lightning starts

    def training_checkpoint(path: Path) -> Path:
        """Weights with the marks of a training checkpoint (optimizer and loop state)."""
        checkpoint = torch.load(path, weights_only=True)
        checkpoint.update({"pytorch-lightning_version": "2.6", "optimizer_states": [], "loops": {}})
        torch.save(checkpoint, path)
        return path

    unet = tiny_unetformer(2)
    with pytest.raises(
        CheckpointError,
        match=r"unet\.ckpt: it holds a UNetFormer, the config's net is a FTUNetFormer; its 2 "
        r"classes \(a, b\) differ from the config's 6.*set pretrained_ckpt_path instead",
    ):
        resume_from(training_checkpoint(save(unet, tmp_path / "unet.ckpt", classes=("a", "b"))))
    with pytest.raises(
        CheckpointError,
        match=r"weights\.ckpt: not a training checkpoint \(it lacks the optimizer and loop state",
    ):
        resume_from(save(tiny_net(), tmp_path / "weights.ckpt"))  # Lightning: KeyError
    wider = training_checkpoint(save(tiny_net(decode_channels=32), tmp_path / "wider.ckpt"))
    with pytest.raises(
        CheckpointError, match=r"wider\.ckpt: its weights do not fit.*another shape"
    ):
        resume_from(wider)
    with pytest.raises(CheckpointError, match="gone.ckpt: checkpoint file not found"):
        resume_from(tmp_path / "gone.ckpt")


def test_pretrained_from_another_architecture_is_an_error_another_class_count_loads(
    tmp_path, caplog
):
    unet = tiny_unetformer(6)
    with pytest.raises(CheckpointError, match=r"unet\.ckpt: holds a UNetFormer but the config's"):
        load_pretrained_weights(tiny_net(), save(unet, tmp_path / "unet.ckpt"))
    nine = tiny_net(num_classes=9)
    path = save(nine, tmp_path / "nine.ckpt", classes=tuple(f"c{i}" for i in range(9)))
    net = tiny_net()
    with caplog.at_level(logging.WARNING):
        report = load_pretrained_weights(net, path)
    assert "trained for 9 classes, the net has 6: its class head is not loaded" in caplog.text
    assert report["mismatched"] and all(
        "head" in key or "aux" in key for key in report["mismatched"]
    )
    assert torch.equal(net.backbone.state_dict()["patch_embed.proj.weight"], nine.backbone.state_dict()["patch_embed.proj.weight"])  # fmt: skip


def test_backbone_only_weights_are_mapped_onto_the_backbone(tmp_path, caplog):
    timm_swin = timm.create_model(TINY_SWIN, **TINY_SWIN_KWARGS)
    torch.save(timm_swin.state_dict(), tmp_path / "swin_backbone.pth")  # keys: layers.0.blocks...
    net = tiny_net()
    with caplog.at_level(logging.WARNING):
        report = load_pretrained_weights(net, tmp_path / "swin_backbone.pth")
    backbone = net.backbone.state_dict()
    assert "backbone weights only, mapped onto net.backbone" in caplog.text
    assert "left out" in caplog.text and "head.fc.weight" in caplog.text  # timm's classifier
    assert report["unexpected"] == [] and report["mismatched"] == []
    # the per-stage output norms (not in an ImageNet classifier) and the decoder start fresh
    assert report["missing"] and all(
        key.startswith(("decoder.", "backbone.output_norms.")) for key in report["missing"]
    )
    source = timm_swin.state_dict()
    qkv = "layers.2.blocks.0.attn.qkv.weight"
    assert torch.equal(backbone[qkv], source[qkv])
    # timm merges patches at the start of a stage, the published Swin at the end of the previous
    merge = "downsample.reduction.weight"
    assert torch.equal(backbone[f"layers.0.{merge}"], source[f"layers.1.{merge}"])


def test_teacher_with_other_classes_is_a_clear_error(tmp_path):
    path = save(tiny_net(3), tmp_path / "teacher.ckpt", classes=("a", "b", "c"))
    with pytest.raises(CheckpointError, match=r"teacher\.ckpt: the teacher has 3 classes.*has 6"):
        load_teacher(path, CLASSES)


def test_output_dir_equal_to_input_dir_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    import ensemble_inference

    (tmp_path / "in").mkdir()
    argv = ["ensemble_inference.py", "--input-dir", str(tmp_path / "in"), "--output-dir"]
    monkeypatch.setattr(sys, "argv", [*argv, str(tmp_path / "in" / ".." / "in")])
    with pytest.raises(SystemExit, match="2"):
        run_script(ensemble_inference.main)
    assert "is the input folder" in capsys.readouterr().err


# --- 4. security: weights-only loads, links -----------------------------------------------------


class Payload:
    """An arbitrary object: a weights-only load refuses to unpickle it."""


def call_text(text: str, start: int) -> str:
    """The call starting at ``text[start]`` up to its closing parenthesis."""
    depth = 0
    for index in range(text.index("(", start), len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[start : index + 1]
    return text[start:]


def test_every_torch_load_in_the_project_is_weights_only():
    skip = {".venv", ".git", "tests", "data", "model_weights", "lightning_logs", "outputs"}
    sources = [p for p in REPO_ROOT.rglob("*.py") if not skip & set(p.relative_to(REPO_ROOT).parts)]
    assert any(path.name == "checkpoint.py" for path in sources)
    for path in sources:
        text = path.read_text()
        assert not re.search(r"^\s*(import|from)\s+(pickle|dill|cloudpickle)\b", text, re.M), path
        for match in re.finditer(r"torch\.load\(", text):
            call = call_text(text, match.start())
            assert "weights_only=True" in call, f"{path}: {call}"


def test_resume_and_lightning_loads_refuse_pickled_code(tmp_path, synthetic_root):
    unsafe = tmp_path / "unsafe.ckpt"
    torch.save({"state_dict": {}, "payload": Payload()}, unsafe)
    config = tiny_config(
        tmp_path / "c.py",
        data_root=synthetic_root,
        weights_path=tmp_path / "w",
        resume_ckpt_path=str(unsafe),
    )
    with pytest.raises(CheckpointError, match="unsafe.ckpt: not a readable weights-only"):
        train(load_config(config))
    with pytest.raises(Exception, match="[Ww]eights only load failed"):
        AtomicCheckpointIO().load_checkpoint(unsafe, weights_only=False)  # asked, still refused


@pytest.fixture
def sources(tmp_path):
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 3, "Val": 1}, tile_size=16)
    oem = write_openearthmap_release(
        tmp_path / "OpenEarthMap", regions=("alpha",), tiles_per_region=6, tile_size=16
    )
    return target, oem


def build(target: Path, oem: Path, output: Path) -> None:
    plan = plan_combined_dataset(CombineSettings(target, oem, output))
    build_combined_dataset(plan, progress=False)


def test_combined_links_stay_inside_the_target_root(sources, tmp_path):
    target, oem = sources
    # A target tile that is itself a link to storage elsewhere: linked as listed, read through.
    elsewhere = tmp_path / "storage"
    elsewhere.mkdir()
    tile = sorted((target / "Train" / "images_png").iterdir())[0]
    os.replace(tile, elsewhere / tile.name)
    tile.symlink_to(elsewhere / tile.name)
    # The output root given as a link: built in its real folder, where the relative links work.
    (tmp_path / "real_out").mkdir()
    (tmp_path / "out_link").symlink_to(tmp_path / "real_out")
    build(target, oem, tmp_path / "out_link")
    assert (tmp_path / "out_link").is_symlink()
    links = [p for p in (tmp_path / "real_out").rglob("target_*")]
    assert len(links) == 6 and all(p.is_symlink() for p in links)
    real_target = target.resolve()
    for link in links:
        lands = Path(os.path.normpath(link.parent / os.readlink(link)))
        assert real_target in lands.parents, (link, lands)  # the link itself stays in the root
        assert link.resolve().is_file()
    assert read_image(tmp_path / "real_out/Train/images_png" / f"target_{tile.name}").shape[0] == 16


def test_rebuild_never_follows_links_out_of_the_output(sources, tmp_path):
    target, oem = sources
    output = tmp_path / "combined"
    build(target, oem, output)
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    (output / "Train" / "images_png" / "link_to_file.png").symlink_to(precious / "notes.txt")
    (output / "Train" / "link_to_folder").symlink_to(precious, target_is_directory=True)
    # a staging folder's name as a killed build left it, made a link to precious data
    killed = subprocess.Popen([sys.executable, "-c", "pass"])
    killed.wait()
    made = temporary_name(output)
    made.unlink()
    name, host, _, token, tail = made.name.rsplit(".", 4)
    staging = output.parent / ".".join([name, host, str(killed.pid), token, tail])
    staging.symlink_to(precious, target_is_directory=True)
    build(target, oem, output)
    assert (precious / "notes.txt").read_text() == "keep me"
    assert sorted(p.name for p in precious.iterdir()) == ["notes.txt"]
    assert not (output / "Train" / "link_to_folder").exists()  # the old build is gone
    assert not staging.is_symlink()
    assert not list(output.parent.glob(".combined.*"))
