"""Segmentation losses: a functional core (cross-entropy, soft Dice) and thin module wrappers.

Every loss takes ``logits: (B, C, H, W)`` raw scores and ``target: (B, H, W)`` int64 class ids in
which ``ignore_index`` marks pixels that count for nothing. Losses are computed in float32 whatever
the logits' dtype, and a batch whose pixels are all ignored gives 0 (with zero gradients), not NaN.

Partial labels: ``label_sets`` maps further target ids to sets of classes, for pixels known to be
"one of these" (a combined build's label sets, ``BiodiversityCombinedDataset.label_sets``).
``partial_label_cross_entropy`` scores such a pixel by the probability of its whole set; in
``CEDiceLoss(label_sets=...)`` the Dice and Lovász terms leave set pixels out, as ignored.
"""

from collections.abc import Mapping, Sequence
from numbers import Integral

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


def partial_label_cross_entropy(
    logits: Tensor,
    target: Tensor,
    label_sets: Mapping[int, Sequence[int]],
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """Cross-entropy of partial labels, averaged over non-ignored pixels; logits: (B, C, H, W),
    target: (B, H, W) class ids, label-set ids (keys of ``label_sets``) or ``ignore_index``.

    Per pixel p with allowed classes S(p) (``{target_p}`` for a class id, ``label_sets[target_p]``
    for a set id): -log sum_{c in S(p)} softmax(logits_p)_c, computed in float32 as
    logsumexp(all logits) - logsumexp(logits of S(p)). A set of one class is plain cross-entropy; a
    set of every class costs nothing. Without label sets this is ``cross_entropy_loss`` itself.

    A target id that is neither a class, a set id nor ``ignore_index`` has no allowed class: its
    loss is +inf (no host sync to check it here), which the training stops at, naming the images.
    """
    check_shapes(logits, target)
    if not label_sets:
        return cross_entropy_loss(logits, target, ignore_index=ignore_index)
    allowed = label_set_table(label_sets, logits.shape[1], ignore_index).to(logits.device)
    logits = logits.float()
    valid = target != ignore_index
    # The table's last row allows nothing: the row of every id it does not know.
    unknown = allowed.shape[0] - 1
    rows = torch.where((target >= 0) & (target < unknown), target, unknown)
    rows = rows.masked_fill(~valid, 0)  # ignored pixels: any finite row, left out below
    member = allowed[rows].permute(0, 3, 1, 2)  # (B, C, H, W)
    log_total = torch.logsumexp(logits, dim=1)
    log_member = torch.logsumexp(logits.masked_fill(~member, float("-inf")), dim=1)
    # where(), not a product: an ignored pixel must add an exact 0 and no gradient.
    per_pixel = torch.where(valid, log_total - log_member, torch.zeros_like(log_total))
    total = per_pixel.sum()
    denom = valid.sum().to(total)
    # As in cross_entropy_loss: divide by 1 when nothing is valid (an exact 0, zero gradients).
    return total / torch.where(denom > 0, denom, torch.ones_like(denom))


def label_set_table(
    label_sets: Mapping[int, Sequence[int]], num_classes: int, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """(N + 1, C) bool: row i marks the classes target id i allows (one for a class id, its set's
    for a set id, none for any other id); the last row allows nothing. N = 1 + the largest id.

    A set id that is a class id or ``ignore_index``, or a set that is empty or names an id outside
    0..C-1, is a ValueError."""
    label_sets = check_label_sets(label_sets, ignore_index)
    for set_id, members in label_sets.items():
        if set_id < num_classes:
            raise ValueError(
                f"label set id {set_id} is a class id (0..{num_classes - 1}); set ids come after "
                "the classes"
            )
        outside = [c for c in members if c >= num_classes]
        if outside:
            raise ValueError(
                f"label set {set_id}: {list(members)} names {outside}, not class ids of logits "
                f"with {num_classes} classes"
            )
    size = max(num_classes, max(label_sets, default=0) + 1)
    table = torch.zeros(size + 1, num_classes, dtype=torch.bool)
    table[torch.arange(num_classes), torch.arange(num_classes)] = True
    for set_id, members in label_sets.items():
        table[set_id, list(members)] = True
    return table


def check_label_sets(
    label_sets: Mapping[int, Sequence[int]] | None, ignore_index: int = IGNORE_INDEX
) -> dict[int, tuple[int, ...]]:
    """``label_sets`` as ``{set id: (class ids, ...)}`` of plain ints (``{}`` for None); ids must be
    non-negative integers, a set non-empty, and no set id ``ignore_index`` (ValueError)."""
    checked = {}
    for set_id, members in (label_sets or {}).items():
        ids = [set_id, *members]
        if not all(isinstance(i, Integral) and not isinstance(i, bool) and i >= 0 for i in ids):
            raise ValueError(
                f"label set {set_id!r}: {members!r}; expected non-negative integer ids, "
                "{set id: (class ids, ...)}"
            )
        if set_id == ignore_index:
            raise ValueError(f"label set id {set_id} is the ignore id")
        if not members:
            raise ValueError(f"label set {set_id} is empty; a set names at least one class")
        checked[int(set_id)] = tuple(int(c) for c in members)
    return checked


def sets_as_ignore(
    target: Tensor, label_sets: Mapping[int, Sequence[int]], ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """target (B, H, W) with the pixels of label-set ids set to ``ignore_index`` (for the terms
    that need one class per pixel); ``target`` itself when there are no sets."""
    if not label_sets:
        return target
    set_ids = torch.tensor(list(label_sets), dtype=target.dtype, device=target.device)
    return target.masked_fill(torch.isin(target, set_ids), ignore_index)


def _register_class_weights(
    module: nn.Module, class_weights: Sequence[float] | Tensor | None
) -> None:
    """``class_weights`` (C,) as the float32 buffer ``module.class_weights`` (None without), so
    that they follow ``module.to()``."""
    weights = None if class_weights is None else torch.as_tensor(class_weights).float()
    # Not persistent: the weights come from the config, so checkpoints hold only the network.
    module.register_buffer("class_weights", weights, persistent=False)


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
        _register_class_weights(self, class_weights)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, C, H, W) raw scores, target: (B, H, W) class ids -> scalar loss."""
        return cross_entropy_loss(
            logits,
            target,
            ignore_index=self.ignore_index,
            label_smoothing=self.label_smoothing,
            class_weights=self.class_weights,
        )


class PartialLabelCrossEntropyLoss(nn.Module):
    """``partial_label_cross_entropy`` as a module: ``label_sets`` {set id: (class ids, ...)}."""

    def __init__(
        self, label_sets: Mapping[int, Sequence[int]], *, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.label_sets = check_label_sets(label_sets, ignore_index)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, C, H, W) raw scores, target: (B, H, W) class or set ids -> scalar loss."""
        return partial_label_cross_entropy(logits, target, self.label_sets, self.ignore_index)


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
        _register_class_weights(self, class_weights)

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

    ``label_sets`` ({set id: (class ids, ...)}, e.g. ``BiodiversityCombinedDataset.label_sets``):
    both cross-entropy terms become ``partial_label_cross_entropy``, and the Dice and Lovász terms
    leave set pixels out (a pixel that is "one of these" has no single class). Empty or None: the
    plain loss, bit for bit. Not combined with ``class_weights`` or ``label_smoothing``.
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
        label_sets: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        super().__init__()
        label_sets = check_label_sets(label_sets, ignore_index)
        if label_sets and class_weights is not None:
            raise ValueError(
                "class_weights with label_sets is not supported: a pixel of a label set has no "
                "single class to weight. Drop class_weights, or build the data without sets"
            )
        if label_sets and label_smoothing:
            raise ValueError(
                f"label_smoothing={label_smoothing} with label_sets is not supported; use 0.0"
            )
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
        self.ignore_index = ignore_index
        self.label_sets = label_sets
        if label_sets:
            self.ce = PartialLabelCrossEntropyLoss(label_sets, ignore_index=ignore_index)
        else:
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
        # Dice and Lovász need one class per pixel: label-set pixels count as ignored there.
        single = sets_as_ignore(target, self.label_sets, self.ignore_index)
        if self.ce_weight:
            terms.append(self.ce_weight * self.ce(logits, target))
        if self.dice_weight:
            terms.append(self.dice_weight * self.dice(logits, single))
        if self.lovasz_weight:
            terms.append(self.lovasz_weight * self.lovasz(logits, single))
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
