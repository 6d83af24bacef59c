"""The class scheme: the one place that names the target classes, their colours and the ignore id.

A user with other target classes edits ``CLASSES``/``PALETTE`` here and ``OEM_TO_TARGET`` below.
"""

import colorsys

import numpy as np

CLASSES: tuple[str, ...] = ("other", "forest", "grassland", "cropland", "settlement", "water")
PALETTE: tuple[tuple[int, int, int], ...] = (
    (128, 0, 0),
    (34, 97, 38),
    (0, 255, 36),
    (75, 181, 73),
    (222, 31, 7),
    (0, 69, 255),
)
NUM_CLASSES: int = len(CLASSES)
IGNORE_INDEX: int = 255
IGNORE_COLOR: tuple[int, int, int] = (0, 0, 0)

# OpenEarthMap ids 0..8 -> target ids, indexed by the OpenEarthMap id: void->ignore,
# bareland->other, rangeland->grassland, developed space->settlement, road->settlement,
# tree->forest, water->water, agriculture land->cropland, building->settlement.
OEM_CLASSES: tuple[str, ...] = (
    "void",
    "bareland",
    "rangeland",
    "developed space",
    "road",
    "tree",
    "water",
    "agriculture land",
    "building",
)
OEM_TO_TARGET: tuple[int, ...] = (IGNORE_INDEX, 0, 2, 4, 4, 1, 5, 3, 4)

# ImageNet statistics on the 0-255 RGB scale (albumentations' Normalize defaults x 255).
IMAGENET_NORMALIZATION: dict[str, tuple[float, float, float]] = {
    "mean": (123.675, 116.28, 103.53),
    "std": (58.395, 57.12, 57.375),
}


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """``PALETTE`` for a scheme of its size; for another size, distinct colours spread over hues
    (a checkpoint of another class scheme written without its palette)."""
    if num_classes == len(PALETTE):
        return PALETTE
    hues = (index / max(num_classes, 1) for index in range(num_classes))
    return tuple(tuple(round(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.85, 0.9)) for hue in hues)


def colorize_mask(mask: np.ndarray, palette=None, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """mask: (H, W) class ids -> (H, W, 3) uint8 RGB in ``palette`` (default ``PALETTE``); ignore
    and unknown ids black."""
    palette = PALETTE if palette is None else palette
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    lut[ignore_index] = IGNORE_COLOR
    return lut[mask]
