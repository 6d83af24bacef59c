"""Shared test helpers, each written once: tiny networks and their checkpoints, tiny synthetic
datasets in the real layouts, tiny training configs and the one-process validation they are compared
with, Python subprocesses and file digests."""

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine
from torch import nn
from torch.utils.data import DataLoader

from geoseg.datasets import CLASSES, IGNORE_INDEX, TargetDataset
from geoseg.datasets.synthetic import write_target_dataset
from geoseg.models import FTUNetFormer, UNetFormer, load_model, save_model

REPO_ROOT = Path(__file__).resolve().parents[1]
# CI's real sample data sits beside the checkout; a checkout elsewhere (a git worktree) names it
# with GEOSEG_REALDATA.
REALDATA = Path(os.environ.get("GEOSEG_REALDATA", REPO_ROOT.parent / "shared" / "realdata"))

# A config module for the tests: the demo teacher's shape at the smallest size. Placeholders are
# filled by `write_config`; everything else is what a user's config looks like.
TINY_CONFIG = """
import torch
from torch.utils.data import DataLoader

from geoseg.datasets import CLASSES, IGNORE_INDEX, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.models import FTUNetFormer

classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX
train_loader = DataLoader(
    TargetDataset("{data_root}", "Train", transform=train_transform(32)),
    batch_size=4, shuffle=True, drop_last=True, num_workers={num_workers},
)
val_loader = DataLoader(TargetDataset("{data_root}", "Val"), batch_size=4)
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_tiny_patch4_window7_224",
    backbone_kwargs=dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
    decode_channels=16,
    window_size=4,
    aux_head={aux_head},  # off in the published FT-UNetFormer; on by default: its loss trains too
)
loss = CEDiceLoss(ignore_index=ignore_index)
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max={max_epoch})
max_epoch = {max_epoch}
log_every_n_steps = 1
accelerator = "cpu"
devices = 1
weights_path = "{weights_path}"
weights_name = "best"
log_name = "tiny"
monitor = "val_mIoU"
monitor_mode = "max"
resume_ckpt_path = {resume_ckpt_path!r}
deterministic = {deterministic!r}
"""


def write_config(path: Path, **values) -> Path:
    """Write TINY_CONFIG with ``values`` (data_root, weights_path; optional: max_epoch,
    resume_ckpt_path, num_workers, deterministic, aux_head)."""
    defaults = {
        "max_epoch": 2,
        "resume_ckpt_path": None,
        "num_workers": 0,
        "deterministic": False,
        "aux_head": True,
    }
    path.write_text(TINY_CONFIG.format(**{**defaults, **values}))
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny target-layout dataset: 8 Train, 4 Val, 4 Test tiles of 32x32."""
    root = tmp_path_factory.mktemp("synthetic") / "biodiversity"
    return write_target_dataset(root, {"Train": 8, "Val": 4, "Test": 4}, tile_size=32, seed=1)


# --- subprocesses and files ----------------------------------------------------------------------


def run_python(*args, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """``python *args`` with the tests' own interpreter, its output captured as text; ``kwargs``
    (cwd, env...) go to subprocess.run."""
    command = [sys.executable, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, **kwargs)


def file_digest(path: Path) -> str:
    """The SHA-256 of the file's bytes, to tell that a file was left as it was."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree_sha256(root: Path) -> str:
    """One hash over every file's relative path and bytes under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


# --- tiny networks and their checkpoints ---------------------------------------------------------

TINY_SWIN = "swin_tiny_patch4_window7_224"
# one block a stage, 16..128 channels: the Swin every FT-UNetFormer test builds
TINY_SWIN_KWARGS = dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1))


def tiny_ftunetformer(
    num_classes: int = len(CLASSES), seed: int | None = None, **kwargs
) -> FTUNetFormer:
    """FTUNetFormer on the tiny Swin with a 16-channel decoder; ``kwargs`` override any argument.

    With ``seed``, torch's global seed is set to it first: the same weights on every call."""
    if seed is not None:
        torch.manual_seed(seed)
    args = dict(
        num_classes=num_classes,
        backbone=TINY_SWIN,
        backbone_kwargs=dict(TINY_SWIN_KWARGS),
        decode_channels=16,
        window_size=4,
    )
    return FTUNetFormer(**{**args, **kwargs})


def tiny_unetformer(num_classes: int = len(CLASSES), **kwargs) -> UNetFormer:
    """UNetFormer on ResNet-18 with a 16-channel decoder; ``kwargs`` override any argument."""
    args = dict(num_classes=num_classes, backbone="resnet18", decode_channels=16, window_size=4)
    return UNetFormer(**{**args, **kwargs})


def sharp_ftunetformer(seed: int = 0) -> FTUNetFormer:
    """The tiny FT-UNetFormer initialised from ``seed``, every BatchNorm's running variance 0.01.

    Untrained, a network predicts one class almost everywhere; sharp norm layers make its argmax
    vary with the input, so that comparing predictions means something."""
    net = tiny_ftunetformer(seed=seed)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_var.fill_(0.01)
    return net


def save(net: nn.Module, path: Path, classes=CLASSES) -> Path:
    """``net`` written as a model checkpoint (weights and model record) at ``path``."""
    save_model(net, path, classes=classes, ignore_index=IGNORE_INDEX)
    return path


# --- tiny images and tiles -----------------------------------------------------------------------


def rgb(height: int = 8, width: int = 8, value: int = 100) -> np.ndarray:
    """A (height, width, 3) uint8 image of one value."""
    return np.full((height, width, 3), value, dtype=np.uint8)


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A (height, width, 3) uint8 image of uniform noise."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_pair(root: Path, stem: str, image, mask, split: str = "Train") -> None:
    """One tile in the target layout: ``split/images_png/stem.png`` and ``split/masks_png/stem.png``
    (either left out when None)."""
    (root / split / "images_png").mkdir(parents=True, exist_ok=True)
    (root / split / "masks_png").mkdir(parents=True, exist_ok=True)
    if image is not None:
        cv2.imwrite(str(root / split / "images_png" / f"{stem}.png"), image)
    if mask is not None:
        cv2.imwrite(str(root / split / "masks_png" / f"{stem}.png"), mask)


def write_inputs(folder: Path, sizes) -> Path:
    """Random RGB PNGs ``tile_000.png``... of the given (height, width) sizes in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, (height, width) in enumerate(sizes):
        image = random_image(height, width, index)
        cv2.imwrite(str(folder / f"tile_{index:03d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def chesapeake_samples() -> tuple[Path, np.ndarray]:
    """The real Chesapeake sample tiles' folder and the suggested remap of their codes to the six
    target classes (the sample tiles' own notes; 15, no data, -> ignore); skips the test where they are
    absent."""
    source = REALDATA / "chesapeake_samples"
    if not source.is_dir():
        pytest.skip(f"real sample data not found at {source}")
    remap = np.full(256, IGNORE_INDEX, np.uint8)
    remap[[1, 2, 3, 4, 5, 6]] = [5, 1, 2, 0, 4, 4]
    return source, remap


# --- tiny GeoTIFF scenes -------------------------------------------------------------------------

SCENE_CRS = "EPSG:32631"
SCENE_TRANSFORM = Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0)


def write_geotiff(
    path: Path, bands: np.ndarray, crs=SCENE_CRS, transform=SCENE_TRANSFORM, **profile
) -> Path:
    """``bands``: (count, H, W) written as a GeoTIFF in ``crs`` at ``transform`` (by default
    SCENE_CRS at SCENE_TRANSFORM)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = bands.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=bands.dtype,
        crs=crs,
        transform=transform,
        **profile,
    ) as dataset:
        dataset.write(bands)
    return path


def random_bands(height: int, width: int, seed: int = 0, low: int = 0) -> np.ndarray:
    """(3, height, width) uint8 bands of uniform noise in [low, 256)."""
    return np.random.default_rng(seed).integers(low, 256, (3, height, width), dtype=np.uint8)


# --- validation in one process: what a distributed run must equal --------------------------------

VAL_TILES, VAL_BATCH = 5, 2  # 5 is not a multiple of 2 processes x batch 2: padding would repeat


def cpu_trainer(**kwargs):
    """A quiet one-CPU Lightning trainer (no logger, checkpoints or progress bar); ``kwargs`` add
    to or override its arguments."""
    # imported here: most test files never train, and Lightning is slow to import
    import pytorch_lightning as pl

    args = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
    )
    return pl.Trainer(**{**args, **kwargs})


def single_process_validation(checkpoint_path: Path, data_root: Path):
    """The checkpoint's weights validated by one process on the Val split: (module, trainer)."""
    from geoseg.losses import CEDiceLoss
    from geoseg.training import SupervisedModule

    net = load_model(checkpoint_path)
    module = SupervisedModule(
        net,
        CEDiceLoss(ignore_index=IGNORE_INDEX),
        None,
        None,
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
    )
    trainer = cpu_trainer()
    loader = DataLoader(TargetDataset(data_root, "Val"), batch_size=VAL_BATCH)
    trainer.validate(module, loader, verbose=False)
    return module, trainer
