"""A full disk (or a quota, a read-only folder) while writing: one line naming the file, the reason
and the free space, the previous file intact, no temporary file left."""

import errno
import hashlib
import os
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import rasterio.shutil
import torch
from rasterio.transform import Affine
from torch import nn

from geoseg.cli import run_script
from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.datasets.combine import CombineSettings, build_combined_dataset, plan_combined_dataset
from geoseg.datasets.io import write_png_atomic
from geoseg.datasets.synthetic import write_openearthmap_release, write_target_dataset
from geoseg.errors import CheckpointError, WriteError
from geoseg.inference import EnsemblePredictor, PredictionJob, predict_scene
from geoseg.models import UNetFormer, save_model
from geoseg.models.checkpoint import read_checkpoint, save_checkpoint_atomic
from geoseg.training.callbacks import AtomicCheckpointIO

from conftest import REPO_ROOT, write_config

resource = pytest.importorskip("resource")  # POSIX: a file size limit stands in for a full disk

NO_SPACE = os.strerror(errno.ENOSPC)  # "No space left on device"
FREE = r"[\d.]+ (B|KiB|MiB|GiB|TiB) free on its file system"


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def only_file(folder: Path) -> list[str]:
    """The names in ``folder``, hidden temporaries included."""
    return sorted(p.name for p in folder.iterdir())


@contextmanager
def file_size_limit(size: int):
    """Writes past ``size`` bytes fail with EFBIG inside this block, as on a full disk: the
    libraries see a failed write(2) and report it their way (Python ignores SIGXFSZ)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (size, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def no_space_after(calls: int):
    """A ``Path.write_bytes`` whose write number ``calls`` (from 1) writes half and fails: the disk
    filled up."""
    real = Path.write_bytes
    count = [0]

    def write_bytes(self, data):
        count[0] += 1
        if count[0] < calls:
            return real(self, data)
        real(self, bytes(data)[: len(data) // 2])
        raise OSError(errno.ENOSPC, NO_SPACE)

    return write_bytes


# --- checkpoints ---------------------------------------------------------------------------------


def test_checkpoint_on_a_full_disk_is_one_line_with_the_free_space(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    save_checkpoint_atomic({"global_step": 1, "w": torch.arange(4.0)}, path)
    before = digest(path)
    real_save = torch.save

    def disk_full_midway(obj, file, *args, **kwargs):
        real_save({"partial": torch.zeros(10)}, file)
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(torch, "save", disk_full_midway)
    with pytest.raises(CheckpointError) as caught:
        AtomicCheckpointIO().save_checkpoint({"global_step": 2, "w": torch.zeros(4)}, path)
    monkeypatch.undo()
    message = str(caught.value)
    assert "\n" not in message
    assert re.fullmatch(
        rf"{re.escape(str(path))}: could not write the checkpoint \({NO_SPACE}; {FREE}\); "
        "the previous one is intact",
        message,
    ), message
    assert digest(path) == before and read_checkpoint(path)["global_step"] == 1
    assert only_file(tmp_path) == ["last.ckpt"]


def test_torch_s_runtime_error_on_a_failed_write_is_the_same_one_line(tmp_path):
    """torch reports a failed write(2) as a RuntimeError ("file write failed", "unexpected pos")
    that names no reason."""
    path = tmp_path / "last.ckpt"
    save_checkpoint_atomic({"global_step": 1, "w": torch.arange(4.0)}, path)
    before = digest(path)
    with file_size_limit(64 * 1024), pytest.raises(CheckpointError) as caught:
        save_checkpoint_atomic({"global_step": 2, "w": torch.zeros(1_000_000)}, path)
    assert re.fullmatch(
        rf"{re.escape(str(path))}: could not write the checkpoint \({os.strerror(errno.EFBIG)}; "
        rf"{FREE}\); the previous one is intact",
        str(caught.value),
    ), caught.value
    assert digest(path) == before and read_checkpoint(path)["global_step"] == 1
    assert only_file(tmp_path) == ["last.ckpt"]
    # a new checkpoint in the same folder: nothing partial
    with file_size_limit(64 * 1024), pytest.raises(CheckpointError, match="nothing partial"):
        save_checkpoint_atomic({"w": torch.zeros(1_000_000)}, tmp_path / "best.ckpt")
    assert only_file(tmp_path) == ["last.ckpt"]


def test_other_runtime_errors_of_torch_save_are_not_called_write_errors(tmp_path, monkeypatch):
    def broken(obj, file, *args, **kwargs):
        raise RuntimeError("cannot pickle this tensor subclass")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="cannot pickle"):
        save_checkpoint_atomic({"w": torch.zeros(4)}, tmp_path / "last.ckpt")
    assert only_file(tmp_path) == []


def test_a_write_lost_at_fsync_does_not_replace_the_previous_checkpoint(tmp_path, monkeypatch):
    """Some file systems (NFS) report a full disk only when the data is flushed."""
    path = tmp_path / "last.ckpt"
    save_checkpoint_atomic({"global_step": 1}, path)
    before = digest(path)

    def fsync(descriptor):
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(os, "fsync", fsync)
    with pytest.raises(CheckpointError, match=f"could not write the checkpoint \\({NO_SPACE};"):
        save_checkpoint_atomic({"global_step": 2}, path)
    assert digest(path) == before
    assert only_file(tmp_path) == ["last.ckpt"]


@pytest.mark.slow
def test_training_on_a_full_disk_ends_with_one_error_line_and_a_loadable_last_checkpoint(
    tmp_path, synthetic_root
):
    weights = tmp_path / "weights"
    train = [sys.executable, str(REPO_ROOT / "train_supervision.py"), "-c"]
    run = dict(cwd=tmp_path, capture_output=True, text=True, timeout=300)
    config = write_config(
        tmp_path / "first.py", data_root=synthetic_root, weights_path=weights, max_epoch=1
    )
    first = subprocess.run([*train, str(config)], **run)
    assert first.returncode == 0, first.stderr[-3000:]
    last = weights / "last.ckpt"
    before = digest(last)
    config = write_config(
        tmp_path / "resumed.py",
        data_root=synthetic_root,
        weights_path=weights,
        max_epoch=2,
        resume_ckpt_path=str(last),
    )

    def limit():  # the checkpoints (megabytes) no longer fit; the logs (kilobytes) do
        resource.setrlimit(resource.RLIMIT_FSIZE, (1_000_000, resource.RLIM_INFINITY))

    resumed = subprocess.run(
        [*train, str(config)],
        **run,
        preexec_fn=limit,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert resumed.returncode == 2, resumed.stderr[-3000:]
    assert "Traceback" not in resumed.stderr
    errors = [line for line in resumed.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, resumed.stderr[-3000:]
    assert re.fullmatch(
        rf"error: {re.escape(str(weights))}/\S+\.ckpt: could not write the checkpoint "
        rf"\({os.strerror(errno.EFBIG)}; {FREE}\); the previous one is intact",
        errors[0],
    ), errors[0]
    assert digest(last) == before and read_checkpoint(last)["epoch"] == 0
    assert not [p for p in weights.iterdir() if p.name.startswith(".")]


# --- PNGs and maps -------------------------------------------------------------------------------


def test_png_on_a_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "tile.png"
    write_png_atomic(path, np.zeros((8, 8), np.uint8))
    before = digest(path)
    monkeypatch.setattr(Path, "write_bytes", no_space_after(1))
    with pytest.raises(WriteError) as caught:
        write_png_atomic(path, np.full((8, 8), 3, np.uint8))
    monkeypatch.undo()
    assert re.fullmatch(
        rf"{re.escape(str(path))}: could not write the file \({NO_SPACE}; {FREE}\); "
        "the previous one is intact",
        str(caught.value),
    ), caught.value
    assert isinstance(caught.value, OSError)  # callers that catch OSError still do
    assert digest(path) == before and only_file(tmp_path) == ["tile.png"]


def test_read_only_folder_is_the_same_one_line(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders")
    folder = tmp_path / "out"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(WriteError, match=os.strerror(errno.EACCES)):
            write_png_atomic(folder / "tile.png", np.zeros((8, 8), np.uint8))
    finally:
        folder.chmod(0o755)


def test_ensemble_inference_on_a_full_disk_prints_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    import ensemble_inference

    torch.manual_seed(0)
    net = UNetFormer(num_classes=len(CLASSES), backbone="resnet18", decode_channels=16)
    save_model(net.eval(), tmp_path / "m.ckpt", classes=CLASSES, ignore_index=IGNORE_INDEX)
    inputs, output = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    for name in ("a", "b"):
        cv2.imwrite(str(inputs / f"{name}.png"), np.full((16, 16, 3), 100, np.uint8))
    output.mkdir()
    cv2.imwrite(str(output / "a.png"), np.zeros((16, 16), np.uint8))  # an earlier run's
    before = digest(output / "a.png")
    monkeypatch.setattr(Path, "write_bytes", no_space_after(1))
    monkeypatch.setattr(
        sys,
        "argv",
        ["ensemble_inference.py", "--input-dir", str(inputs), "--output-dir", str(output)]
        + ["--checkpoints", str(tmp_path / "m.ckpt"), "--num-workers", "0"]
        + ["--scales", "1.0", "--flips", "none", "--precision", "fp32"],
    )
    with pytest.raises(SystemExit, match="2"):
        run_script(ensemble_inference.main)
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if line.startswith("error: ")]
    assert re.fullmatch(
        rf"error: {re.escape(str(output))}/a\.png: could not write the file \({NO_SPACE}; {FREE}\); "
        "the previous one is intact",
        line,
    ), err
    assert "Traceback" not in err
    assert digest(output / "a.png") == before and only_file(output) == ["a.png"]


class Pointwise(nn.Module):
    """A 1x1 convolution: enough of a network to write a map."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, len(CLASSES), 1)

    def forward(self, x):
        return self.conv(x / 255)


def write_scene(path: Path, size: int) -> Path:
    bands = np.random.default_rng(0).integers(0, 256, (3, size, size), dtype=np.uint8)
    profile = dict(driver="GTiff", width=size, height=size, count=3, dtype="uint8")
    transform = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)
    with rasterio.open(path, "w", **profile, crs="EPSG:32631", transform=transform) as dataset:
        dataset.write(bands)
    return path


@pytest.mark.parametrize("stage", ["tiles", "cog-copy"])
def test_geotiff_map_on_a_full_disk_is_one_line_and_keeps_the_previous_map(
    tmp_path, monkeypatch, stage
):
    """GDAL reports a failed write as RasterioIOError("Write failed ...") or CPLE_* errors, in
    the tiled pieces or in the Cloud-Optimized copy."""
    source = write_scene(tmp_path / "scene.tif", 512)
    output = tmp_path / "out" / "scene.tif"
    predictor = EnsemblePredictor([Pointwise().eval()], precision="fp32")
    job = PredictionJob(output.parent, tile_size=256, overlap=32)
    predict_scene(predictor, source, job)
    before = digest(output)
    real_copy = rasterio.shutil.copy

    def copy_on_a_full_disk(*args, **kwargs):
        with file_size_limit(4096):
            return real_copy(*args, **kwargs)

    if stage == "cog-copy":
        monkeypatch.setattr(rasterio.shutil, "copy", copy_on_a_full_disk)
    with file_size_limit(4096 if stage == "tiles" else 2**40), pytest.raises(WriteError) as caught:
        predict_scene(predictor, source, job)
    message = str(caught.value)
    assert "\n" not in message and "See previous exception" not in message
    assert re.fullmatch(
        rf"{re.escape(str(output))}: could not write the map \(.+; {FREE}\); "
        "the previous one is intact",
        message,
    ), message
    assert digest(output) == before and only_file(output.parent) == ["scene.tif"]


# --- datasets ------------------------------------------------------------------------------------


def test_combined_dataset_on_a_full_disk_is_one_line_and_keeps_the_previous_build(
    tmp_path, monkeypatch
):
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 3, "Val": 1}, tile_size=16)
    oem = write_openearthmap_release(
        tmp_path / "OpenEarthMap", regions=("alpha",), tiles_per_region=6, tile_size=16
    )
    output = tmp_path / "combined"
    plan = plan_combined_dataset(CombineSettings(target, oem, output))
    build_combined_dataset(plan, progress=False)
    before = {p: digest(p) for p in output.rglob("*") if p.is_file()}
    monkeypatch.setattr(Path, "write_bytes", no_space_after(3))
    with pytest.raises(WriteError, match=f"could not write the file \\({NO_SPACE}; {FREE}\\)"):
        build_combined_dataset(plan_combined_dataset(CombineSettings(target, oem, output)))
    monkeypatch.undo()
    assert {p: digest(p) for p in output.rglob("*") if p.is_file()} == before
    assert only_file(tmp_path) == ["OpenEarthMap", "biodiversity", "combined"]
