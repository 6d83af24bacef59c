"""Teacher: a larger FT-UNetFormer (Swin-Large) trained with CE + Dice on the target data alone.

Run: python train_supervision.py -c config/biodiversity/teacher.py
Output: model_weights/biodiversity/teacher/last.ckpt (the KD stages read it as their teacher).
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
data_root = "data/biodiversity"  # <root>/{Train,Val,Test}/{images_png,masks_png}/<stem>.png
classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX  # "no data" pixels: left out of losses and metrics
normalization = IMAGENET_NORMALIZATION  # mean/std on the 0-255 scale, saved in every checkpoint
img_size = 512
batch_size = 4  # per device; the effective batch is batch_size x devices x accumulate_grad_batches
num_workers = 4  # per device

# The datasets come first so that missing data fails before any weights are fetched.
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
    pin_memory=True,
    persistent_workers=num_workers > 0,
)
val_loader = DataLoader(
    val_dataset, batch_size=batch_size, num_workers=num_workers, persistent_workers=num_workers > 0
)

# --- model ------------------------------------------------------------------------------------
# pretrained=True downloads timm's ImageNet weights once (needs internet); on an offline machine give
# the path of a local backbone weights file instead.
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_large_patch4_window12_384",
    pretrained=True,
    decode_channels=256,
)
# CE + Dice on the main head, plus 0.4 x CE on the auxiliary head (UNetFormer's training loss).
loss = CEDiceLoss(ignore_index=ignore_index)

# --- optimisation -----------------------------------------------------------------------------
max_epoch = 45
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
# The lrs above are for the seed's effective batch of 4 images per step (batch_size x devices
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
weights_path = "model_weights/biodiversity/teacher"
weights_name = "teacher-best"  # best checkpoint by `monitor`; last.ckpt is always written too
log_name = "biodiversity/teacher"  # TensorBoard: lightning_logs/biodiversity/teacher
monitor = "val_mIoU"
monitor_mode = "max"
pretrained_ckpt_path = None  # initialise the weights from a checkpoint (weights only)
resume_ckpt_path = None  # resume a killed run: "model_weights/biodiversity/teacher/last.ckpt"
