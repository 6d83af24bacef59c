"""What every step 1 shares: target + OpenEarthMap data, loss and schedule.

Not a stage config itself: step1_pretrain_combined.py (FT-UNetFormer) and the other
architectures' step 1 configs import it and add their network, so that they differ in nothing else.
Validates on the target Val split (logged as val_*, the checkpoint monitor: what step 2 is for)
and on the OpenEarthMap Val of the combined set (logged as val_oem_*).
"""

import torch

from geoseg.datasets import BiodiversityCombinedDataset, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders, param_groups

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
# Domain balance: data_loaders(..., target_share=0.5) puts as many target as OpenEarthMap tiles in
# every batch, whatever the two sets' sizes (the target tiles then repeat within an epoch); without
# it a batch holds the domains in proportion to their tile counts.
# CE + Dice, + 0.4 x CE on the auxiliary head of the networks that have one (UPerNet)
loss = CEDiceLoss()
# Class imbalance and mixing: the levers of kd_student.py work here too, with the statistics of
# the combined Train split, e.g. (from geoseg.datasets import class_weights)
#   loss = CEDiceLoss(class_weights=class_weights(combined_root, "Train", "inverse_sqrt_frequency"))

# --- optimisation -------------------------------------------------------------------------------
max_epoch = 50
lr = 6e-4


def optimisation(net: torch.nn.Module, lr: float, max_epoch: int):
    """(optimizer, lr_scheduler): AdamW, the pretrained backbone 10x slower than the new decoder,
    cosine decay per epoch to 1e-6."""
    optimizer = torch.optim.AdamW(param_groups(net, lr=lr, backbone_lr=lr / 10, weight_decay=0.01))
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_epoch, eta_min=1e-6
    )


# --- runs that survive interruption ---------------------------------------------------------------
# A re-launched or requeued job continues from <weights_path>/last.ckpt (or the checkpoint a SLURM
# pre-emption saved there) when one exists; set None to always start fresh.
resume_ckpt_path = "auto"
