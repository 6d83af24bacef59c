"""The ignore band along class boundaries, where map data and image disagree most (registration
error, generalised outlines, buffered widths that are only estimates).

A labelled pixel becomes ignore when a pixel of any other value lies within the band's width,
centre to centre: another class, or unmapped area (ignore already). So the band runs on both
sides of an edge between two classes, and on the labelled side of an edge with unmapped area,
whose other side is ignore anyway: an outline is as uncertain where nothing lies beyond it. The
border of the scene is no edge (nothing is known beyond it).
"""

import numpy as np
from scipy import ndimage

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.io import PixelSize

TOLERANCE = 1e-9


def band_footprint(width_m: float, pixel: PixelSize) -> np.ndarray:
    """The (2 r + 1, 2 c + 1) bool offsets whose pixel centres lie within ``width_m`` metres of
    the centre one (pixels of ``pixel`` size, not necessarily square)."""
    reach = width_m * (1 + TOLERANCE)  # 0.6 m is 2 pixels of 0.3 m, whatever the rounding
    rows, columns = int(reach / pixel.y), int(reach / pixel.x)
    dy, dx = np.mgrid[-rows : rows + 1, -columns : columns + 1]
    return (dy * pixel.y) ** 2 + (dx * pixel.x) ** 2 <= reach**2


def ignore_boundaries(labels: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """``labels`` (H, W) uint8 with ``IGNORE_INDEX`` on every pixel that has a pixel of another
    value within ``footprint``; beyond the array's edge, values continue as at the edge."""
    if footprint.size == 1:
        return labels
    # Within the footprint, the largest value differs from the smallest exactly where two values
    # meet (IGNORE_INDEX is the largest value, so unmapped neighbours count).
    highest = ndimage.maximum_filter(labels, footprint=footprint, mode="nearest")
    lowest = ndimage.minimum_filter(labels, footprint=footprint, mode="nearest")
    return np.where(highest == lowest, labels, np.uint8(IGNORE_INDEX))
