"""What every demo step 1 shares (config/biodiversity/pretrain_combined.py at CPU size): the
synthetic target + OpenEarthMap data, loss and schedule. Not a stage config.

Prepare: python -m geoseg.datasets.synthetic --output-root data/demo
         python create_combined_dataset.py --target-root data/demo/biodiversity \
             --oem-root data/demo/OpenEarthMap --output-root data/demo/biodiversity_combined \
             --target-gsd 1.0
The ablation's step 1 levers (step1_<lever>.py) use this with other options or other builds.
"""

import torch

from geoseg.datasets import BiodiversityCombinedDataset, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders, param_groups

target_root = "data/demo/biodiversity"
combined_root = "data/demo/biodiversity_combined"


def combined_data(root: str = combined_root, **loader_options):
    """(train_loader, val_loader, loss) on the combined set at ``root``: validation on the
    target's Val (primary) and the combined Val; CE + Dice, whose CE is the partial-label one on a
    build with label sets. ``loader_options`` go to data_loaders (e.g. target_share=0.5)."""
    train_set = BiodiversityCombinedDataset(root, "Train", transform=train_transform(64))
    loaders = data_loaders(
        train_set,
        {
            "target": TargetDataset(target_root, "Val"),
            "oem": BiodiversityCombinedDataset(root, "Val"),
        },
        batch_size=8,
        num_workers=2,
        **loader_options,
    )
    return (*loaders, CEDiceLoss(label_sets=train_set.label_sets))


train_loader, val_loader, loss = combined_data()

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
