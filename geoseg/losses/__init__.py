"""Segmentation losses with an explicit ``ignore_index``."""

from geoseg.losses.segmentation import (
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    cross_entropy_loss,
    dice_loss,
)

__all__ = ["CEDiceLoss", "CrossEntropyLoss", "DiceLoss", "cross_entropy_loss", "dice_loss"]
