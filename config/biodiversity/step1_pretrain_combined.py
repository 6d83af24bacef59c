"""Step 1: pretrain the student (FT-UNetFormer, Swin-Base) on target + OpenEarthMap data.

Prepare: python create_combined_dataset.py   (writes data/biodiversity_combined)
Run:     python train_supervision.py -c config/biodiversity/step1_pretrain_combined.py
Output:  model_weights/biodiversity/student_pretrain_all/last.ckpt (step 2 starts from it)

Validates on the target Val split (logged as val_*, the checkpoint monitor) and on the
OpenEarthMap Val of the combined set (logged as val_oem_*).
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
target_root = "data/biodiversity"  # <root>/{Train,Val,Test}/{images_png,masks_png}/<stem>.png
combined_root = "data/biodiversity_combined"  # written by create_combined_dataset.py
classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX
normalization = IMAGENET_NORMALIZATION
img_size = 512
batch_size = 2  # per device (the seed's setting)
num_workers = 4  # per device

train_dataset = BiodiversityCombinedDataset(
    combined_root, "Train", transform=train_transform(img_size), normalization=normalization
)
val_target_dataset = TargetDataset(target_root, "Val", normalization=normalization)
val_oem_dataset = BiodiversityCombinedDataset(combined_root, "Val", normalization=normalization)
train_loader = DataLoader(
    train_dataset,
    batch_size=batch_size,
    shuffle=True,
    drop_last=True,
    num_workers=num_workers,
    pin_memory=True,
    persistent_workers=num_workers > 0,
)
# The first entry is the primary validation set: val_mIoU, the checkpoint monitor.
val_loader = {
    "target": DataLoader(val_target_dataset, batch_size=batch_size, num_workers=num_workers),
    "oem": DataLoader(val_oem_dataset, batch_size=batch_size, num_workers=num_workers),
}

# --- model ------------------------------------------------------------------------------------
# pretrained=True downloads timm's ImageNet weights once; offline, give a local weights file path.
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_base_patch4_window12_384",
    pretrained=True,
    decode_channels=256,
)
loss = CEDiceLoss(ignore_index=ignore_index)  # CE + Dice, plus 0.4 x CE on the auxiliary head

# --- optimisation -----------------------------------------------------------------------------
max_epoch = 50
check_val_every_n_epoch = 1
lr = 6e-4
backbone_lr = 6e-5  # the pretrained backbone learns 10x slower than the new decoder
weight_decay = 0.01
optimizer = torch.optim.AdamW(
    param_groups(net, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay)
)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=1e-6)

# --- hardware (passed to the Lightning Trainer) -----------------------------------------------
# One GPU is the seed's set-up. With several GPUs or nodes, Lightning's DDP runs one process per
# GPU, each with its own batch_size images and num_workers loader workers, and averages the
# gradients; validation is exact (no tile is counted twice to even out the processes).
# Several nodes: launch with torchrun or SLURM srun (README, "Several GPUs and nodes").
accelerator = "auto"
devices = "auto"  # per node: all visible GPUs, a count (4) or a list of ids ([0, 1])
num_nodes = 1  # machines; must equal torchrun --nnodes or SLURM --nodes
strategy = "auto"  # DDP whenever devices x num_nodes > 1
# The lrs above are for the seed's effective batch of 2 images per step (batch_size x devices
# x num_nodes x accumulate_grad_batches, one GPU). With k times that batch an epoch has k times
# fewer steps; the per-epoch cosine schedule is unaffected. Keeping the lrs stays closest to the
# seed; to make up for the fewer steps, scale both by sqrt(k) (AdamW's usual rule; e.g. 4 GPUs:
# lr 1.2e-3, backbone_lr 1.2e-4).
# False: the decoder's BatchNorm statistics come from each GPU's own batch, as on one GPU. True:
# from all GPUs' images together (one all-reduce per BN layer and step; the Swin backbone has
# LayerNorm only): steadier statistics for a small per-GPU batch, but not the seed's recipe.
sync_batchnorm = False
precision = None  # None: "bf16-mixed" on GPUs that support it, "32-true" otherwise
# torch.compile the network: the first training and validation steps take minutes to compile
# (and again for every new input shape); later steps may be faster on a GPU. Measure it on your
# GPU (python -m benchmarks) before a multi-hour run. True, or a dict of torch.compile arguments
# such as {"mode": "max-autotune"}.
compile = False

# --- outputs ----------------------------------------------------------------------------------
weights_path = "model_weights/biodiversity/student_pretrain_all"
weights_name = "student_pretrain_all-best"
log_name = "biodiversity/student_pretrain_all"
monitor = "val_mIoU"  # target Val mIoU: what step 2 is for
monitor_mode = "max"
pretrained_ckpt_path = None
resume_ckpt_path = None
