"""Shared fixtures: tiny synthetic datasets in the real layouts and tiny training configs."""

from pathlib import Path

import pytest

from geoseg.datasets.synthetic import write_target_dataset

REPO_ROOT = Path(__file__).resolve().parents[1]
REALDATA = REPO_ROOT.parent / "shared" / "realdata"

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
    aux_head=True,  # off in the published FT-UNetFormer; on here to train the auxiliary loss too
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
    resume_ckpt_path, num_workers, deterministic)."""
    defaults = {"max_epoch": 2, "resume_ckpt_path": None, "num_workers": 0, "deterministic": False}
    path.write_text(TINY_CONFIG.format(**{**defaults, **values}))
    return path


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """A tiny target-layout dataset: 8 Train, 4 Val, 4 Test tiles of 32x32."""
    root = tmp_path_factory.mktemp("synthetic") / "biodiversity"
    return write_target_dataset(root, {"Train": 8, "Val": 4, "Test": 4}, tile_size=32, seed=1)
