"""What every demo step 1 shares (config/biodiversity/pretrain_combined.py at CPU size): the
synthetic target + OpenEarthMap data, loss and schedule. Not a stage config.

Prepare: python -m geoseg.datasets.synthetic --output-root data/demo
         python create_combined_dataset.py --target-root data/demo/biodiversity \
             --oem-root data/demo/OpenEarthMap --output-root data/demo/biodiversity_combined \
             --oem-scale 0.6667
Add --remap '255,255,1|2,4,4,1,5,3,4' to the last command to train rangeland as "forest or
grassland" (and bareland as ignore) with the partial-label loss; Val scores such pixels as ignore.
"""

import torch

from geoseg.datasets import BiodiversityCombinedDataset, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders, param_groups

combined_root = "data/demo/biodiversity_combined"
train_set = BiodiversityCombinedDataset(combined_root, "Train", transform=train_transform(64))
train_loader, val_loader = data_loaders(
    train_set,
    {  # the first validation set is the primary one (val_mIoU)
        "target": TargetDataset("data/demo/biodiversity", "Val"),
        "oem": BiodiversityCombinedDataset(combined_root, "Val"),
    },
    batch_size=8,
    num_workers=2,
)
# The build's label sets ({} without --remap sets: then the plain CE + Dice, unchanged)
loss = CEDiceLoss(label_sets=train_set.label_sets)

max_epoch = 20
lr = 2e-3

accelerator = "cpu"
devices = 1
precision = "32-true"
deterministic = True


def optimisation(net: torch.nn.Module, lr: float, max_epoch: int):
    """(optimizer, lr_scheduler): AdamW at one rate (nothing is pretrained here), cosine decay
    per epoch to 1e-5."""
    optimizer = torch.optim.AdamW(param_groups(net, lr=lr, backbone_lr=lr, weight_decay=0.01))
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_epoch, eta_min=1e-5
    )
