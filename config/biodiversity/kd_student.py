"""What the baseline and step 2 share: target data, student loss, KD settings and schedule.

Not a stage config itself: student_target_only.py, step2_finetune_target_kd.py and the other
families' step 2 configs import it and add their network (student.py) and its initialisation, so
that the runs differ in nothing else.
"""

import torch

from geoseg.datasets import TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders, param_groups

# --- data: the target domain only ---------------------------------------------------------------
data_root = "data/biodiversity"
img_size = 512


def target_loaders(**train_options):
    """(train_loader, val_loader) of the target data; ``train_options`` go to the Train dataset."""
    return data_loaders(
        TargetDataset(data_root, "Train", transform=train_transform(img_size), **train_options),
        TargetDataset(data_root, "Val"),
        batch_size=2,  # per GPU, as step 1
        num_workers=4,
    )


train_loader, val_loader = target_loaders()
# the supervised term: CE + Dice, + 0.4 x CE on the auxiliary head of networks that have one
# (UPerNet; FT-UNetFormer has none)
loss = CEDiceLoss()

# --- class imbalance and mixing: each lever off; `make ablation` measures them on the demo -------
# Train's class shares and weights: python -m geoseg.datasets.stats --root data/biodiversity
# Imports: from geoseg.datasets import ClassMix, CutMix, MixUp, RareClassCrop, class_weights
# Class-weighted CE (add class_weighted_dice=True to weight the Dice term too); class_weights reads
# the masks, ClassStatistics.load("data/biodiversity/Train/class_statistics.json").weights(...)
# the file the command above wrote:
#   loss = CEDiceLoss(class_weights=class_weights(data_root, "Train", "inverse_sqrt_frequency"))
# Lovász-softmax, a direct surrogate of IoU, in place of Dice (or alone: LovaszSoftmaxLoss()):
#   loss = CEDiceLoss(dice_weight=0.0, lovasz_weight=1.0)
# Rare-class crops: half the items from a tile containing a class drawn uniformly among Train's
# (class_weights=... to favour some), the crop centred on one of its pixels where the tile allows:
#   train_loader, val_loader = target_loaders(rare_class_crop=RareClassCrop(p=0.5))
# Mixing of training batches (the teacher sees the mixed images): ClassMix, CutMix or MixUp:
#   batch_mix = ClassMix(p=0.5)

# --- knowledge distillation ---------------------------------------------------------------------
# frozen, any architecture; a GeoSeg teacher once converted by python -m geoseg.models.import_geoseg
teacher_ckpt_path = "model_weights/biodiversity/teacher/last.ckpt"
# loss = kd_alpha x supervised + (1 - kd_alpha) x KD: alpha weights the SUPERVISED term.
# Range 0.5-0.8: lower leans on the teacher.
kd_alpha = 0.7
# Softens both distributions so that the teacher's ranking of the wrong classes is learnt too.
kd_temperature = 3.0
# KD only where the teacher's top probability reaches this; TensorBoard's kd/kept_fraction shows
# the share kept (the recipe expects 70-80%). Range 0.3-0.7.
kd_confidence_threshold = 0.5
# Supervised loss alone for the first epochs (the teacher is not run). Range 7-10 if KD
# destabilises training when it starts.
kd_warmup_epochs = 5

# --- optimisation: 5 warm-up + 20 KD epochs, cosine decay from 1e-4 to 3e-5 ---------------------
max_epoch = 25
lr = 1e-4  # one rate for the whole network: the student is pretrained


def optimisation(net: torch.nn.Module, lr: float, max_epoch: int):
    """(optimizer, lr_scheduler) for ``net``: AdamW, cosine decay per epoch to 3e-5."""
    optimizer = torch.optim.AdamW(param_groups(net, lr=lr, backbone_lr=lr, weight_decay=0.01))
    return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(
        optimizer, T_max=max_epoch, eta_min=3e-5
    )


# --- runs that survive interruption ---------------------------------------------------------------
# A re-launched or requeued job continues from <weights_path>/last.ckpt (or the checkpoint a SLURM
# pre-emption saved there) when one exists; set None to always start fresh.
resume_ckpt_path = "auto"
