"""Segmentation losses: a functional core (cross-entropy, soft Dice) and thin module wrappers.

Every loss takes ``logits: (B, C, H, W)`` raw scores and ``target: (B, H, W)`` int64 class ids in
which ``ignore_index`` marks pixels that count for nothing. Losses are computed in float32 whatever
the logits' dtype, and a batch whose pixels are all ignored gives 0 (with zero gradients), not NaN.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.classes import IGNORE_INDEX
from geoseg.losses.lovasz import LovaszSoftmaxLoss
from geoseg.losses.shapes import check_shapes


def cross_entropy_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    label_smoothing: float = 0.0,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Cross-entropy averaged over non-ignored pixels; logits: (B, C, H, W), target: (B, H, W).

    With ``class_weights`` (C,) it is the weighted mean (sum of weighted losses divided by the sum
    of the weights of the non-ignored pixels), as in ``torch.nn.functional.cross_entropy``.
    """
    check_shapes(logits, target)
    logits = logits.float()
    weight = None if class_weights is None else class_weights.to(logits)
    total = F.cross_entropy(
        logits,
        target,
        weight=weight,
        ignore_index=ignore_index,
        reduction="sum",
        label_smoothing=label_smoothing,
    )
    valid = target != ignore_index
    if weight is None:
        denom = valid.sum().to(total)
    else:
        denom = (weight[target.masked_fill(~valid, 0)] * valid).sum()
    # Divide by 1 when nothing is valid: the sum is then an exact 0, and so are its gradients
    # (a where() over 0/0 would leak NaN into the backward pass).
    return total / torch.where(denom > 0, denom, torch.ones_like(denom))


def dice_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    smooth: float = 0.05,
    class_weights: Tensor | None = None,
) -> Tensor:
    """Multiclass soft Dice loss on softmax probabilities; logits: (B, C, H, W), target: (B, H, W).

    Per class over the whole batch, ignored pixels left out:
    dice_c = (2 * sum(p_c * t_c) + smooth) / (sum(p_c) + sum(t_c) + smooth); the loss is the mean
    of 1 - dice_c over the classes present in the target, 0 when no pixel is valid.

    With ``class_weights`` w (C,) it is the weighted mean over the present classes:
    sum_c w_c * present_c * (1 - dice_c) / sum_c w_c * present_c (0 when that sum is 0).
    """
    check_shapes(logits, target)
    num_classes = logits.shape[1]
    if class_weights is not None and class_weights.shape != (num_classes,):
        raise ValueError(
            f"class_weights of shape {tuple(class_weights.shape)} for {num_classes} classes; "
            f"expected ({num_classes},)"
        )
    probs = logits.float().softmax(dim=1)
    valid = (target != ignore_index).unsqueeze(1)
    classes = torch.arange(num_classes, device=target.device).view(1, -1, 1, 1)
    # A comparison rather than one_hot/scatter: no host sync, and ignore ids need no remapping.
    onehot = ((target.unsqueeze(1) == classes) & valid).float()
    probs = probs * valid
    dims = (0, 2, 3)
    intersection = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims) + smooth
    dice = (2.0 * intersection + smooth) / denom.clamp_min(torch.finfo(denom.dtype).eps)
    present = onehot.sum(dims) > 0
    if class_weights is None:
        return ((1.0 - dice) * present).sum() / present.sum().clamp_min(1)
    weights = class_weights.to(dice) * present
    total = weights.sum()
    # As in cross_entropy_loss: divide by 1 when the weights sum to 0 (an exact 0, zero gradients).
    return ((1.0 - dice) * weights).sum() / torch.where(total > 0, total, torch.ones_like(total))


class CrossEntropyLoss(nn.Module):
    """``cross_entropy_loss`` as a module; ``class_weights`` (C,) is a buffer (follows .to())."""

    class_weights: Tensor | None

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE_INDEX,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        weights = None if class_weights is None else torch.as_tensor(class_weights).float()
        # Not persistent: the weights come from the config, so checkpoints hold only the network.
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, C, H, W) raw scores, target: (B, H, W) class ids -> scalar loss."""
        return cross_entropy_loss(
            logits,
            target,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )


class DiceLoss(nn.Module):
    """``dice_loss`` as a module; ``class_weights`` (C,) is a buffer (follows .to())."""

    class_weights: Tensor | None

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE_INDEX,
        smooth: float = 0.05,
        class_weights: Sequence[float] | Tensor | None = None,
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.smooth = smooth
        weights = None if class_weights is None else torch.as_tensor(class_weights).float()
        # Not persistent: the weights come from the config, so checkpoints hold only the network.
        self.register_buffer("class_weights", weights, persistent=False)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, C, H, W) raw scores, target: (B, H, W) class ids -> scalar loss."""
        return dice_loss(
            logits,
            target,
            ignore_index=self.ignore_index,
            smooth=self.smooth,
            class_weights=self.class_weights,
        )


class CEDiceLoss(nn.Module):
    """Cross-entropy, Dice and Lovász-softmax on the main logits, cross-entropy on the aux logits.

    loss = ce_weight * CE + dice_weight * Dice + lovasz_weight * Lovász (on the main logits)
    + aux_weight * CE (on the aux logits, when given).

    ``output`` is the logits tensor, or ``(logits, aux_logits)`` from the network's
    ``forward_with_aux``, which the training module calls because ``aux_weight`` is above 0; the
    auxiliary head is supervised with cross-entropy only, as in UNetFormer.

    ``class_weights`` weight the cross-entropy terms, and the Dice term too when
    ``class_weighted_dice`` is True (by default Dice is unweighted). A term whose weight is 0 is
    not computed. The Lovász term is ``lovasz_softmax_loss`` with its defaults (classes present in
    the target, the batch pooled).
    """

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE_INDEX,
        ce_weight: float = 1.0,
        dice_weight: float = 1.0,
        aux_weight: float = 0.4,
        lovasz_weight: float = 0.0,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | Tensor | None = None,
        class_weighted_dice: bool = False,
    ) -> None:
        super().__init__()
        weights = {
            "ce_weight": ce_weight,
            "dice_weight": dice_weight,
            "aux_weight": aux_weight,
            "lovasz_weight": lovasz_weight,
        }
        for name, value in weights.items():
            if not value >= 0:  # also rejects NaN
                raise ValueError(f"{name} must be >= 0, got {value}")
        if not (ce_weight or dice_weight or lovasz_weight):
            raise ValueError(
                "ce_weight, dice_weight and lovasz_weight are all 0: nothing would supervise "
                "the main logits"
            )
        if class_weighted_dice and class_weights is None:
            raise ValueError("class_weighted_dice=True needs class_weights")
        self.ce_weight = ce_weight
        self.dice_weight = dice_weight
        self.aux_weight = aux_weight
        self.lovasz_weight = lovasz_weight
        self.class_weighted_dice = class_weighted_dice
        self.ce = CrossEntropyLoss(
            ignore_index=ignore_index,
            label_smoothing=label_smoothing,
            class_weights=class_weights,
        )
        self.dice = DiceLoss(
            ignore_index=ignore_index, class_weights=class_weights if class_weighted_dice else None
        )
        self.lovasz = LovaszSoftmaxLoss(ignore_index=ignore_index)

    def forward(self, output: Tensor | tuple[Tensor, Tensor], target: Tensor) -> Tensor:
        """output: (B, C, H, W) logits or a (logits, aux_logits) pair; target: (B, H, W)."""
        aux_logits = None
        if isinstance(output, (tuple, list)):
            if len(output) != 2:
                raise ValueError(
                    f"CEDiceLoss got a sequence of {len(output)} outputs; "
                    "expected logits or (logits, aux_logits)"
                )
            logits, aux_logits = output
        else:
            logits = output
        # Summed in this order (CE, Dice, Lovász, aux) so that the default weights give the same
        # float result as ever; at least one main term is on (checked in __init__).
        terms = []
        if self.ce_weight:
            terms.append(self.ce_weight * self.ce(logits, target))
        if self.dice_weight:
            terms.append(self.dice_weight * self.dice(logits, target))
        if self.lovasz_weight:
            terms.append(self.lovasz_weight * self.lovasz(logits, target))
        loss = terms[0]
        for term in terms[1:]:
            loss = loss + term
        if aux_logits is not None and self.aux_weight:
            if aux_logits.shape[2:] != target.shape[1:]:
                # An auxiliary head may predict at a lower resolution than the mask.
                aux_logits = F.interpolate(
                    aux_logits, size=target.shape[1:], mode="bilinear", align_corners=False
                )
            loss = loss + self.aux_weight * self.ce(aux_logits, target)
        return loss
