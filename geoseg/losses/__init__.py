"""Segmentation losses with an explicit ``ignore_index``; partial labels through ``label_sets``;
truncated cross-entropy for noisy (map-made) labels."""

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
from geoseg.losses.truncated import TruncatedCrossEntropyLoss, truncated_cross_entropy

__all__ = [
    "CEDiceLoss",
    "CrossEntropyLoss",
    "DiceLoss",
    "LovaszSoftmaxLoss",
    "PartialLabelCrossEntropyLoss",
    "TruncatedCrossEntropyLoss",
    "cross_entropy_loss",
    "dice_loss",
    "lovasz_softmax_loss",
    "partial_label_cross_entropy",
    "truncated_cross_entropy",
]
