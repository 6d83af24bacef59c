"""Demo baseline: config/biodiversity/student_target_only.py at CPU size, on the synthetic data.

Run: python train_kd.py -c config/demo/student_target_only.py
Needs: model_weights/demo/teacher/last.ckpt (config/demo/teacher.py)
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

# --- data: the target domain only -------------------------------------------------------------
data_root = "data/demo/biodiversity"
classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX
normalization = IMAGENET_NORMALIZATION
img_size = 64
batch_size = 8
num_workers = 2

train_loader = DataLoader(
    TargetDataset(data_root, "Train", transform=train_transform(img_size)),
    batch_size=batch_size,
    shuffle=True,
    drop_last=True,
    num_workers=num_workers,
    persistent_workers=num_workers > 0,
)
val_loader = DataLoader(TargetDataset(data_root, "Val"), batch_size=batch_size)

# --- student: the demo student of step 1, from scratch (no step 1: what the baseline measures) --
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_tiny_patch4_window7_224",
    backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]},
    decode_channels=32,
    window_size=4,
)
pretrained_ckpt_path = None
loss = CEDiceLoss(ignore_index=ignore_index)

# --- knowledge distillation: the real settings (alpha weights the supervised term) -------------
teacher_ckpt_path = "model_weights/demo/teacher/last.ckpt"
kd_alpha = 0.7
kd_temperature = 3.0
kd_confidence_threshold = 0.5
kd_warmup_epochs = 5

# --- optimisation: 5 warm-up + 20 KD epochs (the real schedule), cosine decay ------------------
max_epoch = 25
lr = 1e-3  # higher than the real 1e-4: the demo's schedule is a few hundred steps
optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=3e-4)

accelerator = "cpu"
devices = 1
precision = "32-true"
deterministic = True  # same seed, same numbers (on a CPU at no cost in speed)

# --- outputs ----------------------------------------------------------------------------------
weights_path = "model_weights/demo/student_target_only"
weights_name = "student_target_only-best"
log_name = "demo/student_target_only"
monitor = "val_mIoU"
monitor_mode = "max"
resume_ckpt_path = None
