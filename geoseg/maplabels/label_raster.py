"""Writing a scene's weak-label GeoTIFF window by window, in memory bounded by the window.

Each window is burnt with a margin as wide as the ignore band (clipped at the scene's border),
the band is drawn, and the window without its margin is written: every pixel sees the same
neighbours as in the whole scene burnt at once, so the result does not depend on the window size.
"""

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.classes import IGNORE_INDEX, PALETTE
from geoseg.inference.scene import BLOCK_SIZE, GDAL_CACHE_MB, class_colormap
from geoseg.maplabels.boundary import ignore_boundaries
from geoseg.maplabels.scene_features import SceneFeatures

WINDOW_SIZE = 2048  # pixels a side burnt at once: 4 MiB of labels, a few times that while banding
# GDAL's block cache while writing labels and cutting tiles (its default, 5% of the RAM, would
# fill with blocks of a large scene). rasterio hands an integer GDAL_CACHEMAX to GDAL as bytes;
# below a window's size, rasterising would pass over every feature once per chunk of rows that fits.
GDAL_CACHE_BYTES = GDAL_CACHE_MB * 2**20
ATTRIBUTION_TAG = "ATTRIBUTION"


def attribution_tags(attribution: str) -> dict[str, str]:
    """GeoTIFF metadata crediting the map data: our own item and the TIFF copyright tag, which
    GIS software shows."""
    return {ATTRIBUTION_TAG: attribution, "TIFFTAG_COPYRIGHT": attribution}


@dataclass
class LabelCounts:
    """Pixels of a label raster: per value (0..255), and those no feature covered."""

    values: np.ndarray = field(default_factory=lambda: np.zeros(256, np.int64))
    unmapped: int = 0

    def add(self, other: "LabelCounts") -> None:
        self.values += other.values
        self.unmapped += other.unmapped

    @property
    def pixels(self) -> int:
        return int(self.values.sum())


def write_label_raster(
    path: Path,
    features: SceneFeatures,
    footprint: np.ndarray,
    attribution: str,
    window_size: int = WINDOW_SIZE,
) -> LabelCounts:
    """Write the labels of ``features`` on their scene's grid to the GeoTIFF ``path``: uint8
    class ids, ``IGNORE_INDEX`` (its nodata) where no feature lies or within ``footprint`` of
    another value, the class palette as its colour map and ``attribution`` in its metadata
    (``ATTRIBUTION`` and the TIFF copyright tag). Tiled and compressed; written window by window."""
    grid = features.grid
    profile = {
        "driver": "GTiff",
        "width": grid.width,
        "height": grid.height,
        "count": 1,
        "dtype": "uint8",
        "crs": grid.crs,
        "transform": grid.transform,
        "nodata": IGNORE_INDEX,
        "tiled": True,
        "blockxsize": BLOCK_SIZE,
        "blockysize": BLOCK_SIZE,
        "compress": "deflate",
        "BIGTIFF": "IF_SAFER",
    }
    margin_rows, margin_columns = (side // 2 for side in footprint.shape)
    counts = LabelCounts()
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES), rasterio.open(path, "w", **profile) as out:
        for top in range(0, grid.height, window_size):
            for left in range(0, grid.width, window_size):
                height = min(window_size, grid.height - top)
                width = min(window_size, grid.width - left)
                first_row, first_column = max(top - margin_rows, 0), max(left - margin_columns, 0)
                end_row = min(top + height + margin_rows, grid.height)
                end_column = min(left + width + margin_columns, grid.width)
                burnt = features.burn(
                    first_row, first_column, end_row - first_row, end_column - first_column
                )
                core = (
                    slice(top - first_row, top - first_row + height),
                    slice(left - first_column, left - first_column + width),
                )
                labels = ignore_boundaries(burnt, footprint)[core]
                counts.values += np.bincount(labels.ravel(), minlength=256)
                counts.unmapped += int(np.count_nonzero(burnt[core] == IGNORE_INDEX))
                out.write(labels, 1, window=Window(left, top, width, height))
        out.write_colormap(1, class_colormap(PALETTE))
        out.update_tags(**attribution_tags(attribution))
    return counts
