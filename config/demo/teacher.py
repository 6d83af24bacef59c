"""Demo teacher: the biodiversity teacher's recipe at CPU size, on the synthetic data.

Run: python -m geoseg.datasets.synthetic --output-root data/demo
     python train_supervision.py -c config/demo/teacher.py
Same scripts and code paths as config/biodiversity/teacher.py; only sizes and paths differ.
"""

import torch
from torch.utils.data import DataLoader

from geoseg.datasets import (
    CLASSES,
    IGNORE_INDEX,
    IMAGENET_NORMALIZATION,
    TargetDataset,
    train_transform,
)
from geoseg.losses import CEDiceLoss
from geoseg.models import FTUNetFormer
from geoseg.training import param_groups

# --- data -------------------------------------------------------------------------------------
data_root = "data/demo/biodiversity"
classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX
normalization = IMAGENET_NORMALIZATION
img_size = 64
batch_size = 8
num_workers = 2

train_dataset = TargetDataset(
    data_root, "Train", transform=train_transform(img_size), normalization=normalization
)
val_dataset = TargetDataset(data_root, "Val", normalization=normalization)
train_loader = DataLoader(
    train_dataset,
    batch_size=batch_size,
    shuffle=True,
    drop_last=True,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
)
val_loader = DataLoader(
    val_dataset, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0
)

# --- model: a Swin with 2 blocks per stage and 48-channel embedding, trained from scratch ---------
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_tiny_patch4_window7_224",
    backbone_kwargs={"embed_dim": 48, "depths": [2, 2, 2, 2], "num_heads": [2, 4, 8, 16]},
    decode_channels=48,
    window_size=4,
)
loss = CEDiceLoss(ignore_index=ignore_index)

# --- optimisation -----------------------------------------------------------------------------
max_epoch = 40
check_val_every_n_epoch = 1
lr = 2e-3
backbone_lr = 2e-3  # no pretrained backbone here, so no reason to slow it down
weight_decay = 0.01
optimizer = torch.optim.AdamW(
    param_groups(net, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay)
)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=1e-5)

accelerator = "cpu"
devices = 1
precision = "32-true"
deterministic = True  # same seed, same numbers (on a CPU at no cost in speed)

# --- outputs ----------------------------------------------------------------------------------
weights_path = "model_weights/demo/teacher"
weights_name = "teacher-best"
log_name = "demo/teacher"
monitor = "val_mIoU"
monitor_mode = "max"
pretrained_ckpt_path = None
resume_ckpt_path = None
