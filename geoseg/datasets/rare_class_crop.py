"""Rare-class crops: training items centred on a pixel of a class drawn with chosen weights.

Class-uniform sampling (Zhu et al., "Improving Semantic Segmentation via Video Propagation and
Label Relaxation", CVPR 2019): with probability ``p`` a training item is not the indexed tile's
uniform crop but a crop around a pixel of a class ``c`` drawn with ``class_weights`` over the
classes present in the split, from a tile containing ``c`` (uniformly among those tiles), at a
pixel of ``c`` in it (uniformly among a fixed sample of its pixels). A rare class thus reaches the
batches far more often than its pixel share, even when the tiles are no larger than the crop.

The positions come from an index built once when the dataset is created (one pass over the masks,
at most ``samples_per_class`` positions per class and tile), so a step costs nothing more than a
uniform crop.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class RareClassCrop:
    """Settings of rare-class crops for a training dataset (its ``rare_class_crop`` argument).

    With probability ``p`` an item is cropped around a pixel of a class drawn with
    ``class_weights`` (one per class; None: every class present in the split equally likely; a
    class absent from the split is never drawn) by the dataset's ``train_transform``, whose
    ``around`` centres the crop on that pixel where the scaled tile allows.
    """

    p: float = 0.5
    class_weights: Sequence[float] | None = None
    samples_per_class: int = 256

    def __post_init__(self) -> None:
        if isinstance(self.p, bool) or not 0.0 <= self.p <= 1.0:  # NaN fails the comparison
            raise ValueError(f"RareClassCrop(p={self.p!r}): expected a probability in [0, 1]")
        if self.class_weights is not None and not all(w >= 0 for w in self.class_weights):
            raise ValueError(
                f"RareClassCrop(class_weights={tuple(self.class_weights)}): expected weights >= 0"
            )
        if self.samples_per_class < 1:
            raise ValueError(
                f"RareClassCrop(samples_per_class={self.samples_per_class!r}): expected >= 1"
            )


class ClassPixelIndex:
    """For each tile, up to ``samples_per_class`` flat positions of each class present in it."""

    def __init__(
        self,
        num_tiles: int,
        read_mask: Callable[[int], np.ndarray],
        num_classes: int,
        samples_per_class: int,
    ):
        """``read_mask(i)``: the (H, W) class-id mask of tile ``i``, already checked."""
        rng = np.random.default_rng(0)  # a fixed sample: the same index in every process
        self.num_classes = num_classes
        self.widths = np.zeros(num_tiles, dtype=np.int64)
        self.positions: list[dict[int, np.ndarray]] = []
        for tile in range(num_tiles):
            mask = read_mask(tile)
            self.widths[tile] = mask.shape[1]
            counts = np.bincount(mask.ravel(), minlength=256)[:num_classes]
            per_class = {}
            for class_id in np.flatnonzero(counts):
                where = np.flatnonzero(mask.ravel() == class_id)
                if len(where) > samples_per_class:
                    where = np.sort(rng.choice(where, samples_per_class, replace=False))
                per_class[int(class_id)] = where.astype(np.int32)
            self.positions.append(per_class)
        self.tiles_with_class = [
            np.array([t for t, per_class in enumerate(self.positions) if c in per_class])
            for c in range(num_classes)
        ]

    def present_classes(self) -> list[int]:
        """The classes with at least one pixel in some tile."""
        return [c for c, tiles in enumerate(self.tiles_with_class) if len(tiles)]

    def draw(self, class_weights: torch.Tensor) -> tuple[int, int, int, int]:
        """(class, tile, row, column): class ~ ``class_weights`` (C,) over present classes, tile
        uniform among those containing it, position uniform among its sampled pixels there.
        Draws from torch's generator, which the data loader seeds per worker from the run's seed."""
        class_id = int(torch.multinomial(class_weights, 1))
        tiles = self.tiles_with_class[class_id]
        tile = int(tiles[int(torch.randint(len(tiles), ()))])
        where = self.positions[tile][class_id]
        row, column = divmod(int(where[int(torch.randint(len(where), ()))]), int(self.widths[tile]))
        return class_id, tile, row, column


def draw_weights(settings: RareClassCrop, index: ClassPixelIndex, source: str) -> torch.Tensor:
    """The class-draw weights (C,) of ``settings`` restricted to the classes present in the split;
    an error naming ``source`` when they leave nothing to draw."""
    num_classes = index.num_classes
    if settings.class_weights is None:
        weights = torch.ones(num_classes, dtype=torch.float64)
    else:
        if len(settings.class_weights) != num_classes:
            raise ValueError(
                f"RareClassCrop(class_weights=...) has {len(settings.class_weights)} weights; "
                f"{source} has {num_classes} classes"
            )
        weights = torch.as_tensor(settings.class_weights, dtype=torch.float64)
    present = torch.zeros(num_classes, dtype=torch.bool)
    present[index.present_classes()] = True
    weights = weights * present
    if not weights.sum() > 0:
        raise ValueError(
            f"{source}: RareClassCrop's class weights are 0 on every class present in the split "
            f"(present: {index.present_classes()})"
        )
    return weights
