"""Segmentation losses with an explicit ``ignore_index``."""

from geoseg.losses.lovasz import LovaszSoftmaxLoss, lovasz_softmax_loss
from geoseg.losses.segmentation import (
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    cross_entropy_loss,
    dice_loss,
)

__all__ = [
    "CEDiceLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "LovaszSoftmaxLoss",
    "cross_entropy_loss",
    "dice_loss",
    "lovasz_softmax_loss",
]
