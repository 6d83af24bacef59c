"""Step 2: fine-tune the step-1 student on the target data with knowledge distillation from the teacher.

Run: python train_kd.py -c config/biodiversity/step2_finetune_target_kd.py
Needs: model_weights/biodiversity/student_pretrain_all/last.ckpt (step 1:
       python train_supervision.py -c config/biodiversity/step1_pretrain_combined.py) and
       model_weights/biodiversity/teacher/last.ckpt (python train_supervision.py -c config/biodiversity/teacher.py)
Output: model_weights/biodiversity/student_ft_target_kd/last.ckpt
Differs from the baseline (student_target_only.py) only in the initialisation: step 1's weights.
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

# --- data: the target domain only ---------------------------------------------------------------
data_root = "data/biodiversity"  # <root>/{Train,Val,Test}/{images_png,masks_png}/<stem>.png
classes = CLASSES
num_classes = len(classes)
ignore_index = IGNORE_INDEX  # "no data" pixels: left out of the losses (KD too) and the metrics
normalization = IMAGENET_NORMALIZATION  # mean/std on the 0-255 scale, saved in every checkpoint
img_size = 512
batch_size = 2  # per device, as in step 1; effective batch = batch_size x devices x accumulation
num_workers = 4  # per device

# The datasets come first so that missing data fails before any weights are built or read.
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

# --- student: FT-UNetFormer (Swin-Base), initialised from step 1 --------------------------------
net = FTUNetFormer(
    num_classes=num_classes,
    backbone="swin_base_patch4_window12_384",
    pretrained=False,  # every weight comes from pretrained_ckpt_path below
    decode_channels=256,
)
pretrained_ckpt_path = "model_weights/biodiversity/student_pretrain_all/last.ckpt"  # step 1
# CE + Dice on the main head, plus 0.4 x CE on the auxiliary head: the supervised term.
loss = CEDiceLoss(ignore_index=ignore_index)

# --- knowledge distillation ----------------------------------------------------------------------
# The frozen teacher (any architecture this project rebuilds from a checkpoint, same classes).
teacher_ckpt_path = "model_weights/biodiversity/teacher/last.ckpt"
# Loss = kd_alpha x supervised + (1 - kd_alpha) x KD: alpha weights the SUPERVISED term, so 0.7 is
# 70% CE + Dice and 30% distillation. Troubleshooting range 0.5-0.8: lower leans on the teacher.
kd_alpha = 0.7
# Softens both distributions so that the teacher's ranking of the wrong classes is learnt too; the
# KD term is multiplied by T^2 to keep its gradients on the supervised term's scale.
kd_temperature = 3.0
# Pixels where the teacher's top probability (at T = 1) is below this are left out of the KD term;
# TensorBoard's kd/kept_fraction shows the share kept (the seed expects 70-80%). Range 0.3-0.7:
# raise it if the teacher's mistakes are being learnt, lower it if too few pixels are kept.
kd_confidence_threshold = 0.5
# The first epochs use the supervised loss alone (the teacher is not run) so that the student
# adapts to the target domain before it is pulled towards the teacher. Range 7-10 if the KD term
# destabilises training when it starts.
kd_warmup_epochs = 5

# --- optimisation: 5 warm-up + 20 KD epochs -----------------------------------------------------
max_epoch = 25
check_val_every_n_epoch = 1
lr = 1e-4
backbone_lr = 1e-4  # the whole network is pretrained (step 1): one learning rate for all of it
weight_decay = 0.01
optimizer = torch.optim.AdamW(
    param_groups(net, lr=lr, backbone_lr=backbone_lr, weight_decay=weight_decay)
)
# Cosine decay per epoch from 1e-4 to 3e-5.
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=3e-5)

# --- hardware (passed to the Lightning Trainer) -----------------------------------------------
# One GPU is the seed's set-up. With several GPUs or nodes, Lightning's DDP runs one process per
# GPU, each with its own batch_size images, num_workers loader workers and frozen copy of the
# teacher, and averages the gradients; validation is exact (no tile is counted twice to even out
# the processes).
# Several nodes: launch with torchrun or SLURM srun (README, "Several GPUs and nodes").
accelerator = "auto"
devices = "auto"  # per node: all visible GPUs, a count (4) or a list of ids ([0, 1])
num_nodes = 1  # machines; must equal torchrun --nnodes or SLURM --nodes
strategy = "auto"  # DDP whenever devices x num_nodes > 1
# The lrs above are for the seed's effective batch of 2 images per step (batch_size x devices
# x num_nodes x accumulate_grad_batches, one GPU). With k times that batch an epoch has k times
# fewer steps; the per-epoch cosine schedule is unaffected. Keeping the lrs stays closest to the
# seed; to make up for the fewer steps, scale both by sqrt(k) (AdamW's usual rule; e.g. 4 GPUs:
# lr 2e-4, backbone_lr 2e-4).
# False: the decoder's BatchNorm statistics come from each GPU's own batch, as on one GPU. True:
# from all GPUs' images together (one all-reduce per BN layer and step; the Swin backbone has
# LayerNorm only): steadier statistics for a small per-GPU batch, but not the seed's recipe.
sync_batchnorm = False
precision = None  # None: "bf16-mixed" on GPUs that support it, "32-true" otherwise
# torch.compile the student and the teacher: the first training and validation steps take
# minutes to compile (and again for every new input shape); later steps may be faster on a GPU.
# Measure it on your GPU (python -m benchmarks) before a multi-hour run. True, or a dict of
# torch.compile arguments such as {"mode": "max-autotune"}.
compile = False

# --- outputs ----------------------------------------------------------------------------------
weights_path = "model_weights/biodiversity/student_ft_target_kd"
weights_name = "student_ft_target_kd-best"  # best by `monitor`; last.ckpt is always written too
log_name = "biodiversity/student_ft_target_kd"  # TensorBoard: lightning_logs/<log_name>
monitor = "val_mIoU"
monitor_mode = "max"
# resume a killed run: "model_weights/biodiversity/student_ft_target_kd/last.ckpt"
resume_ckpt_path = None
