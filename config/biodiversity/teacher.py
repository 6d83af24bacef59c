"""Teacher: a larger FT-UNetFormer (Swin-Large) trained with CE + Dice on the target data alone.

Run:    python train_supervision.py -c config/biodiversity/teacher.py
Output: model_weights/biodiversity/teacher/last.ckpt (the KD stages' teacher)
Hardware, precision, several GPUs or nodes: see docs/scale-out.md; the
defaults use every visible GPU with bf16 where it is supported.
"""

import torch

from geoseg.datasets import TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.models import FTUNetFormer
from geoseg.training import data_loaders, param_groups

run_name = "biodiversity/teacher"  # model_weights/<run_name>/, lightning_logs/<run_name>/

# --- data: <root>/{Train,Val}/{images_png,masks_png}/<stem>.png, 8-bit RGB tiles -----------------
data_root = "data/biodiversity"
img_size = 512
train_loader, val_loader = data_loaders(
    TargetDataset(data_root, "Train", transform=train_transform(img_size)),
    TargetDataset(data_root, "Val"),
    batch_size=4,  # per GPU; effective batch = batch_size x GPUs x accumulate_grad_batches
    num_workers=4,  # per GPU
)

# --- model: timm's ImageNet Swin-Large window 12 (downloaded once; offline: a local file of that
# model's weights). A teacher trained in GeoSeg needs no training here: convert its checkpoint with
# `python -m geoseg.models.import_geoseg` and point teacher_ckpt_path (kd_student.py) at the output
net = FTUNetFormer(backbone="swin_large_patch4_window12_384", pretrained=True)
loss = CEDiceLoss()  # CE + Dice (+ 0.4 x CE on an auxiliary head: FT-UNetFormer has none)

# --- optimisation: AdamW, cosine decay per epoch ------------------------------------------------
max_epoch = 45
lr = 6e-4
optimizer = torch.optim.AdamW(
    # the pretrained backbone learns 10x slower than the new decoder
    param_groups(net, lr=lr, backbone_lr=lr / 10, weight_decay=0.01)
)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epoch, eta_min=1e-6)

# --- runs that survive interruption ---------------------------------------------------------------
# A re-launched or requeued job continues from <weights_path>/last.ckpt (or the checkpoint a SLURM
# pre-emption saved there) when one exists; set None to always start fresh.
resume_ckpt_path = "auto"
