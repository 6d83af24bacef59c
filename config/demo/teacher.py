"""Demo teacher: config/biodiversity/teacher.py at CPU size, on the synthetic data.

Run: python -m geoseg.datasets.synthetic --output-root data/demo
     python train_supervision.py -c config/demo/teacher.py
Same scripts and code paths as the real config; only sizes, paths and hardware differ.
"""

import torch

from geoseg.datasets import TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.models import FTUNetFormer
from geoseg.training import data_loaders, param_groups

run_name = "demo/teacher"

data_root = "data/demo/biodiversity"
train_loader, val_loader = data_loaders(
    TargetDataset(data_root, "Train", transform=train_transform(64)),
    TargetDataset(data_root, "Val"),
    batch_size=8,
    num_workers=2,
)

# --- model: a Swin with 2 blocks per stage and 48-channel embedding, trained from scratch ---------
net = FTUNetFormer(
    backbone="swin_tiny_patch4_window7_224",
    backbone_kwargs={"embed_dim": 48, "depths": [2, 2, 2, 2], "num_heads": [2, 4, 8, 16]},
    decode_channels=48,
    window_size=4,
)
loss = CEDiceLoss()

max_epoch = 40
lr = 2e-3  # the backbone too: it is not pretrained here, so no reason to slow it down
optimizer = torch.optim.AdamW(param_groups(net, lr=lr, backbone_lr=lr, weight_decay=0.01))
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=1e-5)

accelerator = "cpu"
devices = 1
precision = "32-true"
deterministic = True  # same seed, same numbers (on a CPU at no measurable cost)
