"""What the demo baseline and every demo step 2 share (config/biodiversity/kd_student.py at CPU
size): target data, loss, the real KD settings and schedule. Not a stage config."""

import torch

from geoseg.datasets import TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders

data_root = "data/demo/biodiversity"
img_size = 64


def target_loaders(**train_options):
    """(train_loader, val_loader) of the target data; ``train_options`` go to the Train dataset."""
    return data_loaders(
        TargetDataset(data_root, "Train", transform=train_transform(img_size), **train_options),
        TargetDataset(data_root, "Val"),
        batch_size=8,
        num_workers=2,
    )


train_loader, val_loader = target_loaders()
loss = CEDiceLoss()
# The levers make ablation measures, each in its own config (step2_<lever>.py):
# class-weighted CE, Lovász in place of Dice, rare-class crops, ClassMix.

# knowledge distillation: the real settings (kd_alpha weights the supervised term)
teacher_ckpt_path = "model_weights/demo/teacher/last.ckpt"
kd_alpha = 0.7
kd_temperature = 3.0
kd_confidence_threshold = 0.5
kd_warmup_epochs = 5

# 5 warm-up + 20 KD epochs (the real schedule), cosine decay
max_epoch = 25
lr = 1e-3  # higher than the real 1e-4: the demo's schedule is a few hundred steps

accelerator = "cpu"
devices = 1
precision = "32-true"
deterministic = True


def optimisation(net: torch.nn.Module, lr: float, max_epoch: int):
    """(optimizer, lr_scheduler) for ``net``: AdamW, cosine decay per epoch to 3e-4."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.01)
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_epoch, eta_min=3e-4
    )
