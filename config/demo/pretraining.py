"""What demo step 0 and every demo step 1 share (config/biodiversity/pretraining.py at CPU size):
the optimiser and schedule of a run from scratch, and the hardware. Not a stage config."""

import torch

from geoseg.training import param_groups

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
