"""Demo step 1: config/biodiversity/step1_pretrain_combined.py at CPU size, on the synthetic data.

Prepare: python -m geoseg.datasets.synthetic --output-root data/demo
         python create_combined_dataset.py --target-root data/demo/biodiversity \
             --oem-root data/demo/OpenEarthMap --output-root data/demo/biodiversity_combined \
             --oem-scale 0.6667
Run:     python train_supervision.py -c config/demo/step1_pretrain_combined.py
"""

import torch
from torch.utils.data import DataLoader

from geoseg.datasets import (
    CLASSES,
    IGNORE_INDEX,
    IMAGENET_NORMALIZATION,
    BiodiversityCombinedDataset,
    TargetDataset,
    train_transform,
)
from geoseg.losses import CEDiceLoss
from geoseg.models import FTUNetFormer
from geoseg.training import param_groups

# --- data -------------------------------------------------------------------------------------
target_root = "data/demo/biodiversity"
combined_root = "data/demo/biodiversity_combined"
classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX
normalization = IMAGENET_NORMALIZATION
img_size = 64
batch_size = 8
num_workers = 2

train_dataset = BiodiversityCombinedDataset(
    combined_root, "Train", transform=train_transform(img_size), normalization=normalization
)
train_loader = DataLoader(
    train_dataset,
    batch_size=batch_size,
    shuffle=True,
    drop_last=True,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
)
val_loader = {
    "target": DataLoader(TargetDataset(target_root, "Val"), batch_size=batch_size),
    "oem": DataLoader(BiodiversityCombinedDataset(combined_root, "Val"), batch_size=batch_size),
}

# --- model: the demo student (a small Swin), from scratch ------------------------------------
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_tiny_patch4_window7_224",
    backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]},
    decode_channels=32,
    window_size=4,
)
loss = CEDiceLoss(ignore_index=ignore_index)

# --- optimisation -----------------------------------------------------------------------------
max_epoch = 20
check_val_every_n_epoch = 1
lr = 2e-3
weight_decay = 0.01
optimizer = torch.optim.AdamW(param_groups(net, lr=lr, backbone_lr=lr, weight_decay=weight_decay))
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=1e-5)

accelerator = "cpu"
devices = 1
precision = "32-true"
deterministic = True  # same seed, same numbers (on a CPU at no cost in speed)

# --- outputs ----------------------------------------------------------------------------------
weights_path = "model_weights/demo/student_pretrain_all"
weights_name = "student_pretrain_all-best"
log_name = "demo/student_pretrain_all"
monitor = "val_mIoU"
monitor_mode = "max"
pretrained_ckpt_path = None
resume_ckpt_path = None
