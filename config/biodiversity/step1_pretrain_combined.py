"""Step 1: pretrain the student (FT-UNetFormer, Swin-Base) on target + OpenEarthMap data.

Prepare: python create_combined_dataset.py   (writes data/biodiversity_combined)
Run:     python train_supervision.py -c config/biodiversity/step1_pretrain_combined.py
Output:  model_weights/biodiversity/student_pretrain_all/last.ckpt (step 2 starts from it)

Validates on the target Val split (logged as val_*, the checkpoint monitor: what step 2 is for)
and on the OpenEarthMap Val of the combined set (logged as val_oem_*).
"""

import torch

from geoseg.datasets import BiodiversityCombinedDataset, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders, param_groups

from .student import student

run_name = "biodiversity/student_pretrain_all"

# --- data ---------------------------------------------------------------------------------------
combined_root = "data/biodiversity_combined"  # Train: target_* links + oem_* tiles, Val: oem_*
img_size = 512
train_loader, val_loader = data_loaders(
    BiodiversityCombinedDataset(combined_root, "Train", transform=train_transform(img_size)),
    {  # the first validation set is the primary one (val_mIoU)
        "target": TargetDataset("data/biodiversity", "Val"),
        "oem": BiodiversityCombinedDataset(combined_root, "Val"),
    },
    batch_size=2,  # per GPU, as in the recipe
    num_workers=4,
)

# --- model: the student of step 2, its Swin-Base from student.BACKBONE_WEIGHTS (timm's ImageNet
# weights or GeoSeg's stseg_base.pth), a new decoder
net = student(pretrained=True)
loss = CEDiceLoss()  # CE + Dice (+ 0.4 x CE on an auxiliary head: FT-UNetFormer has none)

# --- optimisation -------------------------------------------------------------------------------
max_epoch = 50
lr = 6e-4
optimizer = torch.optim.AdamW(param_groups(net, lr=lr, backbone_lr=lr / 10, weight_decay=0.01))
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=1e-6)
