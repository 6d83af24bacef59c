"""Truncated cross-entropy: cross-entropy that leaves out the labelled pixels with the highest loss.

For weak labels made from map data (step 0). Their dominant errors are systematic wrong areas: a
residential polygon that covers gardens and trees, all labelled settlement; a forest polygon around
a clearing; a map drawn a few metres off the image. Once a network has learnt the common look of
each class (networks fit the clean patterns of noisy labels before they memorise the noise, Arpit
et al., ICML 2017), the pixels of such an area are the ones it disagrees with most, so dropping a
share of the highest losses removes them from the gradient (small-loss selection, as in
co-teaching, Han et al., NeurIPS 2018; large-loss rejection, Kim et al., CVPR 2022; a trimmed
loss, Shen & Sanghavi, ICML 2019).

Against the alternatives: label smoothing moves a fixed share of every pixel's target to the other
classes, so a wrong area still pulls towards its wrong class with most of its weight; bootstrapping
(Reed et al., 2015) blends every target with the network's own prediction at a fixed weight, which
tempers a wrong area too without removing it, and in its hard form can confirm the network's own
mistakes. Truncation removes what it drops entirely, and how much it drops is set exactly.

The cost: hard pixels that are labelled right (a rare class, a thin road) have high losses too and
may be dropped with the wrong ones. The warm-up, a modest share and step 1 on the real labels
afterwards keep that in bounds; boundary pixels, the hardest of all, are already ignored in the map
labels.
"""

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from geoseg.classes import IGNORE_INDEX
from geoseg.losses.segmentation import cross_entropy_loss
from geoseg.losses.shapes import check_shapes


def truncated_cross_entropy(
    logits: Tensor, target: Tensor, drop_fraction: float, *, ignore_index: int = IGNORE_INDEX
) -> Tensor:
    """Cross-entropy averaged over the labelled pixels of the batch less the ``drop_fraction`` of
    them with the highest loss; logits: (B, C, H, W) raw scores, target: (B, H, W) class ids.

    With n pixels not ``ignore_index`` and k = floor(drop_fraction * n): the mean of the n - k
    smallest per-pixel losses, computed in float32; only those pixels get gradients. Equal losses
    are ranked by pixel order (a stable sort), so the pixels kept are the same on every run.
    ``drop_fraction`` 0 is ``cross_entropy_loss`` itself; no labelled pixel gives 0 (zero
    gradients). Under DDP each process truncates its own batch.
    """
    check_shapes(logits, target)
    check_drop_fraction(drop_fraction)
    if drop_fraction == 0.0:
        return cross_entropy_loss(logits, target, ignore_index=ignore_index)
    losses = F.cross_entropy(
        logits.float(), target, ignore_index=ignore_index, reduction="none"
    ).flatten()
    valid = (target != ignore_index).flatten()
    num_valid = valid.sum()
    # Float64, and a tolerance far below one pixel: floor(0.29 * 100) is 29, not 28.
    num_dropped = torch.floor(num_valid.double() * drop_fraction + 1e-6).long()
    # Ignored pixels rank after every labelled one (cross-entropy is never below 0); the inverse
    # of the sorting permutation is each pixel's rank, 0 for the highest loss.
    ranked = torch.where(valid, losses.detach(), -1.0)
    rank = ranked.argsort(descending=True, stable=True).argsort()
    kept = valid & (rank >= num_dropped)
    # where(), not a product: a dropped pixel adds an exact 0 and no gradient.
    total = torch.where(kept, losses, torch.zeros_like(losses)).sum()
    num_kept = (num_valid - num_dropped).to(total)
    # As in cross_entropy_loss: divide by 1 when nothing is kept (an exact 0, zero gradients).
    return total / torch.where(num_kept > 0, num_kept, torch.ones_like(num_kept))


def check_drop_fraction(drop_fraction: float) -> None:
    """A share of pixels to drop must lie in [0, 1): dropping all would leave nothing to learn."""
    if not 0.0 <= drop_fraction < 1.0:  # also rejects NaN
        raise ValueError(f"drop_fraction={drop_fraction}: expected a share in [0, 1)")


class TruncatedCrossEntropyLoss(nn.Module):
    """``truncated_cross_entropy`` from epoch ``warmup_epochs`` on; plain cross-entropy during the
    warm-up (the network must first learn what each class looks like before its losses can tell a
    wrong label) and in eval mode (the validation loss is the plain one on the real labels).

    The epoch comes from ``set_epoch``, which the training module calls at the start of every
    training epoch (``SupervisedModule`` does for any loss that has it); it starts at 0.
    """

    def __init__(
        self,
        *,
        drop_fraction: float = 0.2,
        warmup_epochs: int = 5,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__()
        check_drop_fraction(drop_fraction)
        if not (isinstance(warmup_epochs, int) and warmup_epochs >= 0):
            raise ValueError(f"warmup_epochs={warmup_epochs!r}: expected an integer >= 0")
        self.drop_fraction = drop_fraction
        self.warmup_epochs = warmup_epochs
        self.ignore_index = ignore_index
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """The current training epoch (0-based)."""
        self.epoch = epoch

    @property
    def active_drop_fraction(self) -> float:
        """The share dropped now: ``drop_fraction`` when training after the warm-up, else 0."""
        truncating = self.training and self.epoch >= self.warmup_epochs
        return self.drop_fraction if truncating else 0.0

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        """logits: (B, C, H, W) raw scores, target: (B, H, W) class ids -> scalar loss."""
        return truncated_cross_entropy(
            logits, target, self.active_drop_fraction, ignore_index=self.ignore_index
        )
