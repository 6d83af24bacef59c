"""Batch-level mixing augmentations for segmentation: CutMix, ClassMix and MixUp.

Each transform takes a collated training batch (``"img"``: (B, C, H, W) on the native pixel
scale, any number of bands; ``"gt_semantic_seg"``: (B, H, W) int64 class ids or the ignore id) and
returns a new dict in which every sample i may be mixed with the partner j = (i + s) % B, one shift
s drawn uniformly in 1..B-1 per batch, so no sample is its own partner. A batch of one sample comes
back unchanged. The input batch is never modified in place; keys other than the two above are
copied through.

- ``CutMix`` (Yun et al., "CutMix: Regularization Strategy to Train Strong Classifiers with
  Localizable Features", ICCV 2019): a box of the partner's image and mask is pasted.
- ``ClassMix`` (Olsson et al., "ClassMix: Segmentation-Based Data Augmentation for
  Semi-Supervised Learning", WACV 2021): the partner's pixels of half of its classes are pasted.
- ``MixUp`` (Zhang et al., "mixup: Beyond Empirical Risk Minimization", ICLR 2018): the images
  are blended, and the loss blends the losses of the two targets (``mixed_loss``).

Every random draw is made on the CPU, from ``generator`` or torch's default generator (which the
trainer seeds), so a seeded run mixes the same way on any device. The masks are then built and
applied on the batch's device.
"""

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from geoseg.classes import IGNORE_INDEX

MIXUP_TARGET = "mixup_target"
"""Key of the second target (the partners' masks, (B, H, W)) in a batch mixed by ``MixUp``."""

MIXUP_WEIGHT = "mixup_weight"
"""Key of lambda (a Python float) in a batch mixed by ``MixUp``: the weight of
``gt_semantic_seg``; ``MIXUP_TARGET`` has weight 1 - lambda."""

IMG, TARGET = "img", "gt_semantic_seg"


def _check_probability(p: float) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ValueError(f"p must be a probability in [0, 1], got p={p!r}")
    return float(p)


def _check_alpha(alpha: float) -> float:
    if (
        isinstance(alpha, bool)
        or not isinstance(alpha, (int, float))
        or not (math.isfinite(alpha) and alpha > 0)
    ):
        raise ValueError(f"alpha must be a finite number > 0, got alpha={alpha!r}")
    return float(alpha)


def _check_batch(batch: dict) -> tuple[Tensor, Tensor]:
    """Return (img, target) after checking their presence, types and shapes."""
    if not isinstance(batch, dict):
        raise ValueError(f"expected a batch dict, got {type(batch).__name__}")
    for key in (IMG, TARGET):
        if key not in batch:
            raise ValueError(f"the batch has no {key!r} key (keys: {sorted(batch)})")
        if not isinstance(batch[key], Tensor):
            raise ValueError(f"batch[{key!r}] must be a tensor, got {type(batch[key]).__name__}")
    img, target = batch[IMG], batch[TARGET]
    if img.ndim != 4 or target.ndim != 3:
        raise ValueError(
            f"batch['img'] {tuple(img.shape)} and batch['gt_semantic_seg'] "
            f"{tuple(target.shape)}: expected (B, C, H, W) and (B, H, W)"
        )
    if img.shape[0] != target.shape[0] or img.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"batch['img'] shape {tuple(img.shape)} does not match batch['gt_semantic_seg'] "
            f"shape {tuple(target.shape)}: expected (B, C, H, W) and (B, H, W)"
        )
    if target.dtype.is_floating_point or target.dtype.is_complex or target.dtype == torch.bool:
        raise ValueError(
            f"batch['gt_semantic_seg'] must hold integer class ids, got {target.dtype}"
        )
    if MIXUP_TARGET in batch:
        # A second target would have to be mixed too; no transform here knows how to, so refuse
        # rather than leave it out of step with the image.
        raise ValueError(
            f"the batch was already mixed by MixUp (it has {MIXUP_TARGET!r}): "
            "apply MixUp once, after any other mixing"
        )
    return img, target


def _partner(x: Tensor, shift: int) -> Tensor:
    """x[(i + shift) % B] for every i: a roll, which needs no index tensor on the device."""
    return torch.roll(x, shifts=-shift, dims=0)


def _draw_shift(batch_size: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(1, batch_size, (), generator=generator))


def _draw_beta(alpha: float, size: int, generator: torch.Generator | None) -> np.ndarray:
    """``size`` draws of Beta(alpha, alpha), as float64.

    torch's Beta distribution takes no generator, so a seed for numpy is drawn from the torch
    generator instead: the draws still follow the torch generator's state.
    """
    seed = int(torch.randint(0, 2**62, (), generator=generator))
    return np.random.default_rng(seed).beta(alpha, alpha, size=size)


class BatchMix:
    """Base of the batch mixing transforms: ``transform(batch, generator=None) -> new batch``.

    ``__call__`` checks the batch, returns a copy of a batch of fewer than two samples, and
    otherwise applies ``apply(batch, draw(batch, generator))``. ``draw`` makes every random
    choice (on the CPU, from ``generator`` or torch's default generator); ``apply`` is
    deterministic given the draw.
    """

    def __call__(self, batch: dict, generator: torch.Generator | None = None) -> dict:
        img, _ = _check_batch(batch)
        if img.shape[0] < 2:
            return dict(batch)
        return self.apply(batch, self.draw(batch, generator))

    def draw(self, batch: dict, generator: torch.Generator | None = None):
        """The random choices for ``batch`` (of at least two samples)."""
        raise NotImplementedError

    def apply(self, batch: dict, draw) -> dict:
        """The mixed batch for the choices ``draw``."""
        raise NotImplementedError

    def _settings(self) -> dict:
        return {}

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={value!r}" for name, value in self._settings().items())
        return f"{type(self).__name__}({settings})"


def _checked_size(batch: dict) -> int:
    img, _ = _check_batch(batch)
    if img.shape[0] < 2:
        raise ValueError(f"mixing needs a batch of at least 2 samples, got {img.shape[0]}")
    return img.shape[0]


@dataclass(frozen=True)
class CutMixDraw:
    """The random choices of one ``CutMix`` call (CPU tensors).

    ``boxes[i] = (top, bottom, left, right)``, half-open, already clipped to the image; an empty
    box (all zeros) for the samples left unmixed.
    """

    shift: int
    mixed: Tensor  # (B,) bool
    lam: Tensor  # (B,) float64, drawn for every sample; used for the mixed ones
    boxes: Tensor  # (B, 4) int64


class CutMix(BatchMix):
    """CutMix for segmentation (Yun et al., ICCV 2019).

    Each sample is mixed with probability ``p``. For a mixed sample, lam ~ Beta(alpha, alpha) and
    a box of height round(H * sqrt(1 - lam)) and width round(W * sqrt(1 - lam)) (Python's
    round: halves to even) is centred on a uniformly drawn pixel and clipped to the image; inside
    it both the image and the mask come from the partner, the partner's ignore pixels included.
    The labels follow the pixels, so no label weighting by lam is needed.
    """

    def __init__(self, p: float = 0.5, alpha: float = 1.0) -> None:
        self.p = _check_probability(p)
        self.alpha = _check_alpha(alpha)

    def _settings(self) -> dict:
        return {"p": self.p, "alpha": self.alpha}

    def draw(self, batch: dict, generator: torch.Generator | None = None) -> CutMixDraw:
        size = _checked_size(batch)
        height, width = batch[TARGET].shape[1:]
        # Every value is drawn for every sample, mixed or not, so that how many values a call
        # takes from the generator does not depend on the outcome of the coin flips.
        shift = _draw_shift(size, generator)
        mixed = torch.rand(size, generator=generator) < self.p
        lam = torch.from_numpy(_draw_beta(self.alpha, size, generator))
        centre_y = torch.randint(0, height, (size,), generator=generator)
        centre_x = torch.randint(0, width, (size,), generator=generator)
        cut = (1.0 - lam).clamp_min(0.0).sqrt().tolist()
        box_h = torch.tensor([round(height * c) for c in cut], dtype=torch.int64)
        box_w = torch.tensor([round(width * c) for c in cut], dtype=torch.int64)
        top = (centre_y - box_h // 2).clamp(0, height)
        bottom = (centre_y - box_h // 2 + box_h).clamp(0, height)
        left = (centre_x - box_w // 2).clamp(0, width)
        right = (centre_x - box_w // 2 + box_w).clamp(0, width)
        boxes = torch.stack([top, bottom, left, right], dim=1) * mixed.unsqueeze(1)
        return CutMixDraw(shift=shift, mixed=mixed, lam=lam, boxes=boxes)

    def apply(self, batch: dict, draw: CutMixDraw) -> dict:
        img, target = _check_batch(batch)
        out = dict(batch)
        if not bool(draw.mixed.any()):  # a CPU tensor: no device sync
            return out
        height, width = target.shape[1:]
        boxes = draw.boxes.to(target.device)
        rows = torch.arange(height, device=target.device)
        cols = torch.arange(width, device=target.device)
        in_rows = (rows >= boxes[:, 0:1]) & (rows < boxes[:, 1:2])  # (B, H)
        in_cols = (cols >= boxes[:, 2:3]) & (cols < boxes[:, 3:4])  # (B, W)
        paste = in_rows.unsqueeze(2) & in_cols.unsqueeze(1)  # (B, H, W)
        out[TARGET] = torch.where(paste, _partner(target, draw.shift), target)
        paste_img = paste.to(img.device).unsqueeze(1)
        out[IMG] = torch.where(paste_img, _partner(img, draw.shift), img)
        return out


@dataclass(frozen=True)
class ClassMixDraw:
    """The random choices of one ``ClassMix`` call.

    ``chosen[i, k]``: class k of sample i's partner is pasted onto sample i; (B, K) bool on the
    mask's device, K = 1 + the largest class id in the batch (0 when every pixel is ignored).
    """

    shift: int
    mixed: Tensor  # (B,) bool, CPU
    chosen: Tensor  # (B, K) bool


class ClassMix(BatchMix):
    """ClassMix for segmentation (Olsson et al., WACV 2021).

    Each sample is mixed with probability ``p``. For a mixed sample, the n classes present in the
    partner's mask (the ignore id excluded) are shuffled and ceil(n / 2) of them chosen; the
    binary mask M is the partner's pixels of the chosen classes, and the image and the mask take
    the partner's pixels exactly where M holds, the sample's own elsewhere. The partner's ignore
    pixels belong to no class and are never pasted; the sample's own ignore pixels stay ignored
    where nothing is pasted over them.

    Finding the classes present costs one device-to-host copy of two numbers per call (the
    smallest and largest class id), to size the class table.
    """

    def __init__(self, p: float = 0.5, ignore_index: int = IGNORE_INDEX) -> None:
        self.p = _check_probability(p)
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an int, got ignore_index={ignore_index!r}")
        self.ignore_index = ignore_index

    def _settings(self) -> dict:
        return {"p": self.p, "ignore_index": self.ignore_index}

    def _class_ids(self, target: Tensor) -> tuple[Tensor, int]:
        """target (B, H, W) -> (B, H*W) int64 ids with the ignore id replaced by K, and K."""
        if target.numel() == 0:
            return target.flatten(1).long(), 0
        valid = target != self.ignore_index
        bounds = torch.stack(
            [torch.where(valid, target, 0).amin(), torch.where(valid, target, -1).amax()]
        )
        low, high = bounds.tolist()
        if low < 0:
            raise ValueError(
                f"batch['gt_semantic_seg'] holds the negative class id {low}, which is not the "
                f"ignore id {self.ignore_index}"
            )
        num_classes = high + 1
        ids = torch.where(valid, target.long(), num_classes).flatten(1)
        return ids, num_classes

    def draw(self, batch: dict, generator: torch.Generator | None = None) -> ClassMixDraw:
        size = _checked_size(batch)
        target = batch[TARGET]
        shift = _draw_shift(size, generator)
        mixed = torch.rand(size, generator=generator) < self.p
        ids, num_classes = self._class_ids(_partner(target, shift))
        # A uniform shuffle of the present classes: rank them by independent uniform keys
        # (float64, so that ties are vanishingly rare). Keys are drawn for every class id of every
        # sample, so the draws depend on the batch's ids but not on which classes are present.
        keys = torch.rand(size, num_classes, generator=generator, dtype=torch.float64)
        keys = keys.to(target.device)
        present = torch.zeros(size, num_classes + 1, dtype=torch.bool, device=target.device)
        present.scatter_(1, ids, True)
        present = present[:, :num_classes]
        keys = keys.masked_fill(~present, math.inf)
        order = keys.argsort(dim=1)
        rank = torch.empty_like(order).scatter_(
            1, order, torch.arange(num_classes, device=target.device).expand_as(order)
        )
        take = (present.sum(dim=1, keepdim=True) + 1) // 2  # ceil(n / 2)
        chosen = present & (rank < take) & mixed.to(target.device).unsqueeze(1)
        return ClassMixDraw(shift=shift, mixed=mixed, chosen=chosen)

    def apply(self, batch: dict, draw: ClassMixDraw) -> dict:
        img, target = _check_batch(batch)
        out = dict(batch)
        if not bool(draw.mixed.any()):
            return out
        partner_target = _partner(target, draw.shift)
        num_classes = draw.chosen.shape[1]
        valid = partner_target != self.ignore_index
        ids = torch.where(valid, partner_target.long(), num_classes).flatten(1)
        # Column K stands for the ignore id: never chosen, so ignore pixels are never pasted.
        chosen = torch.cat([draw.chosen, draw.chosen.new_zeros(draw.chosen.shape[0], 1)], dim=1)
        paste = chosen.to(target.device).gather(1, ids).view_as(target)
        out[TARGET] = torch.where(paste, partner_target, target)
        paste_img = paste.to(img.device).unsqueeze(1)
        out[IMG] = torch.where(paste_img, _partner(img, draw.shift), img)
        return out


@dataclass(frozen=True)
class MixUpDraw:
    """The random choices of one ``MixUp`` call: whether the batch is mixed, and lam."""

    shift: int
    mixed: bool
    lam: float


class MixUp(BatchMix):
    """MixUp for segmentation (Zhang et al., ICLR 2018).

    With probability ``p`` the whole batch is mixed: lam ~ Beta(alpha, alpha), drawn once, and
    img = lam * img + (1 - lam) * img[partner]. The batch keeps its own ``gt_semantic_seg`` and
    gains ``MIXUP_TARGET`` (the partners' masks) and ``MIXUP_WEIGHT`` (lam, a Python float);
    ``mixed_loss`` then blends the losses of the two targets with the same weights. A batch left
    unmixed comes back without those keys.

    The blend is floating point: a float32/float64 image keeps its dtype; a float16/bfloat16 image
    is blended in float32 and cast back (one rounding instead of three); an integer image comes
    back float32.
    """

    def __init__(self, p: float = 0.5, alpha: float = 0.4) -> None:
        self.p = _check_probability(p)
        self.alpha = _check_alpha(alpha)

    def _settings(self) -> dict:
        return {"p": self.p, "alpha": self.alpha}

    def draw(self, batch: dict, generator: torch.Generator | None = None) -> MixUpDraw:
        size = _checked_size(batch)
        shift = _draw_shift(size, generator)
        mixed = bool(torch.rand((), generator=generator) < self.p)
        lam = float(_draw_beta(self.alpha, 1, generator)[0])
        return MixUpDraw(shift=shift, mixed=mixed, lam=lam)

    def apply(self, batch: dict, draw: MixUpDraw) -> dict:
        img, target = _check_batch(batch)
        out = dict(batch)
        if not draw.mixed:
            return out
        work = img if img.dtype in (torch.float32, torch.float64) else img.float()
        blended = draw.lam * work + (1.0 - draw.lam) * _partner(work, draw.shift)
        out[IMG] = blended.to(img.dtype) if img.dtype.is_floating_point else blended
        out[MIXUP_TARGET] = _partner(target, draw.shift)
        out[MIXUP_WEIGHT] = draw.lam
        return out


def mixed_loss(loss_fn, output, batch: dict) -> Tensor:
    """The training loss of a possibly mixed batch.

    ``loss_fn(output, batch["gt_semantic_seg"])``, or for a batch mixed by ``MixUp``
    lam * loss_fn(output, gt_semantic_seg) + (1 - lam) * loss_fn(output, batch[MIXUP_TARGET]),
    lam = batch[MIXUP_WEIGHT] (Zhang et al., ICLR 2018). ``output`` is passed through as is (logits,
    or a (logits, aux_logits) pair for a loss that takes one).
    """
    if TARGET not in batch:
        raise ValueError(f"the batch has no {TARGET!r} key (keys: {sorted(batch)})")
    loss = loss_fn(output, batch[TARGET])
    if MIXUP_TARGET not in batch:
        return loss
    if MIXUP_WEIGHT not in batch:
        raise ValueError(f"the batch has {MIXUP_TARGET!r} but no {MIXUP_WEIGHT!r} key")
    lam = batch[MIXUP_WEIGHT]
    return lam * loss + (1.0 - lam) * loss_fn(output, batch[MIXUP_TARGET])


def ignore_mask(batch: dict, ignore_index: int = IGNORE_INDEX) -> Tensor:
    """(B, H, W) bool: the pixels ignored in ``gt_semantic_seg`` or, in a batch mixed by
    ``MixUp``, in either of its two targets (a pixel ignored by one target is left out of half the
    loss, so it is not a fully supervised pixel)."""
    if TARGET not in batch:
        raise ValueError(f"the batch has no {TARGET!r} key (keys: {sorted(batch)})")
    ignored = batch[TARGET] == ignore_index
    if MIXUP_TARGET in batch:
        ignored = ignored | (batch[MIXUP_TARGET] == ignore_index)
    return ignored
