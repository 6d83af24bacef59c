"""Lovász-softmax loss: a convex surrogate of the per-class Jaccard (IoU) loss.

Berman, Rannen Triki and Blaschko, "The Lovász-Softmax loss: a tractable surrogate for the
optimization of the intersection-over-union measure in neural networks", CVPR 2018.

For a class c with ground-truth pixels G_c and per-pixel errors m_i = |[y_i = c] - p_ic| (p the
softmax probabilities), the loss of the class is the Lovász extension of the Jaccard loss
Delta_c(M) = |M| / |G_c ∪ M| evaluated at m: sort the errors in decreasing order and take
sum_i m_(i) * (Delta_c(first i pixels) - Delta_c(first i - 1 pixels)).

Same conventions as ``geoseg.losses.segmentation``: logits (B, C, H, W), target (B, H, W) with
``ignore_index``; float32 whatever the logits' dtype; 0 with zero gradients when nothing is valid.
"""

from typing import Literal

import torch
from torch import Tensor, nn

from geoseg.classes import IGNORE_INDEX
from geoseg.losses.shapes import check_shapes

_CLASS_MODES = ("present", "all")


def _lovasz_jaccard_grad(fg_sorted: Tensor) -> Tensor:
    """Steps of the Jaccard loss along the sorted pixels; fg_sorted: (..., n) bool -> (..., n) float.

    Entry i is Delta(first i + 1 pixels) - Delta(first i pixels) with Delta(M) = 1 - I/U,
    I = |G \\ M| and U = |G ∪ M|. This equals the usual ``jaccard[1:] - jaccard[:-1]`` on the
    cumulative Jaccard losses, but is written per step so that float32 keeps its relative precision:
    the steps are the gradient with respect to the sorted errors, of order 1/U, and a difference
    of two neighbouring losses loses their digits (about 1% error at a million pixels). Adding a
    pixel of G lowers I by one (step 1/U); adding a pixel outside G raises U by one (step
    I/(U(U - 1))). The counts are integers, so they are exact.
    """
    gt_seen = fg_sorted.to(torch.int32).cumsum(-1, dtype=torch.int32)  # pixels of G so far
    intersection = gt_seen[..., -1:] - gt_seen  # I after each prefix: pixels of G not yet taken
    # U after each prefix: |G| plus the pixels outside G taken so far = I + prefix length (>= 1).
    prefix = torch.arange(1, gt_seen.shape[-1] + 1, dtype=torch.int32, device=gt_seen.device)
    inter = intersection.float()
    uni = inter + prefix.float()
    # (U - 1) is 0 only at the first pixel of a class absent from the target; that entry is
    # overwritten below, the clamp just keeps the division finite.
    grad = torch.where(fg_sorted, 1.0, inter / (uni - 1.0).clamp_min(1.0)) / uni
    # The first step starts from Delta(empty set) = 0: it is the Jaccard loss of the first pixel.
    grad[..., 0] = 1.0 - inter[..., 0] / uni[..., 0]
    return grad


def lovasz_softmax_loss(
    logits: Tensor,
    target: Tensor,
    *,
    ignore_index: int = IGNORE_INDEX,
    classes: Literal["present", "all"] = "present",
    per_image: bool = False,
) -> Tensor:
    """Lovász-softmax loss; logits: (B, C, H, W) raw scores, target: (B, H, W) class ids -> scalar.

    ``classes="present"`` averages over the classes present in the (non-ignored) target,
    ``"all"`` over all C classes (a class absent from the target then costs its largest
    probability). ``per_image=False`` pools every valid pixel of the batch (the paper's batch
    loss); ``per_image=True`` averages the per-image losses over the images that have a valid
    pixel. Ignored pixels count for nothing; no valid pixel at all gives 0 with zero gradients.
    """
    check_shapes(logits, target)
    if classes not in _CLASS_MODES:
        raise ValueError(f"classes must be one of {_CLASS_MODES}, got {classes!r}")
    num_classes = logits.shape[1]
    probs = logits.float().softmax(dim=1).flatten(2)  # (B, C, N)
    labels = target.flatten(1)  # (B, N)
    if not per_image:
        # One group holding the pixels of every image.
        probs = probs.transpose(0, 1).reshape(1, num_classes, -1)
        labels = labels.reshape(1, -1)
    valid = (labels != ignore_index).unsqueeze(1)  # (G, 1, n)
    class_ids = torch.arange(num_classes, device=labels.device).view(1, -1, 1)
    fg = (labels.unsqueeze(1) == class_ids) & valid  # (G, C, n)
    # Instead of removing ignored pixels (a data-dependent shape and a host sync), give them the
    # error -1: they sort after every valid error (>= 0), so the prefixes over valid pixels and
    # hence their Jaccard steps are those of the valid pixels alone; their terms are zeroed below.
    errors = torch.where(valid, (fg.float() - probs).abs(), -1.0)
    errors_sorted, order = errors.sort(dim=-1, descending=True)
    steps = _lovasz_jaccard_grad(fg.gather(-1, order))
    # The -1 placeholders are constants: this drops them from the sum and from the gradient.
    errors_sorted = torch.where(errors_sorted >= 0, errors_sorted, 0.0)
    per_class = (errors_sorted * steps).sum(-1)  # (G, C)

    counted = fg.any(-1).float() if classes == "present" else torch.ones_like(per_class)
    per_group = (per_class * counted).sum(-1) / counted.sum(-1).clamp_min(1.0)
    has_valid = valid.flatten(1).any(-1).float()  # (G,)
    return (per_group * has_valid).sum() / has_valid.sum().clamp_min(1.0)


class LovaszSoftmaxLoss(nn.Module):
    """``lovasz_softmax_loss`` as a module, usable alone as a config's ``loss``.

    It takes the main logits only (no auxiliary head); combine it with cross-entropy, Dice and an
    auxiliary head through ``CEDiceLoss(lovasz_weight=...)``.
    """

    def __init__(
        self,
        *,
        ignore_index: int = IGNORE_INDEX,
        classes: Literal["present", "all"] = "present",
        per_image: bool = False,
    ) -> None:
        super().__init__()
        if classes not in _CLASS_MODES:
            raise ValueError(f"classes must be one of {_CLASS_MODES}, got {classes!r}")
        self.ignore_index = ignore_index
        self.classes = classes
        self.per_image = per_image

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, C, H, W) raw scores, target: (B, H, W) class ids -> scalar loss."""
        if not isinstance(logits, Tensor):
            raise ValueError(
                f"LovaszSoftmaxLoss takes the logits tensor, got {type(logits).__name__}; "
                "for (logits, aux_logits) use CEDiceLoss(lovasz_weight=..., aux_weight=...)"
            )
        return lovasz_softmax_loss(
            logits,
            target,
            ignore_index=self.ignore_index,
            classes=self.classes,
            per_image=self.per_image,
        )
