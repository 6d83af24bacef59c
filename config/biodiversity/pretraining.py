"""What step 0 and every step 1 share: the optimiser and schedule of a run that starts from the
backbone's weights and a new decoder, and the resume rule. Not a stage config."""

import torch

from geoseg.training import param_groups


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
