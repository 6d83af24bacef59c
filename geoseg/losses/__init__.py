"""Segmentation losses with an explicit ``ignore_index``; partial labels through ``label_sets``."""

from geoseg.losses.lovasz import LovaszSoftmaxLoss, lovasz_softmax_loss
from geoseg.losses.segmentation import (
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    PartialLabelCrossEntropyLoss,
    cross_entropy_loss,
    dice_loss,
    partial_label_cross_entropy,
)

__all__ = [
    "CEDiceLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "LovaszSoftmaxLoss",
    "PartialLabelCrossEntropyLoss",
    "cross_entropy_loss",
    "dice_loss",
    "lovasz_softmax_loss",
    "partial_label_cross_entropy",
]
