"""Training tiles of a scene and its label raster, in the target layout TargetDataset reads.

Tiles of ``tile_size`` cover the scene on a grid from its top-left corner; the last tile of a row
or column is moved back to end at the scene's border (it overlaps its neighbour), so every tile is
whole. A tile whose labelled share (pixels not ignore) is below the minimum is left out: where map
data labels so little, the mapping is likely incomplete rather than the land empty.

Names: ``<scene stem>_<top>_<left>`` (pixel offsets in the scene). PNG tiles: the image as 8-bit
RGB (grey repeated, alpha dropped), the mask one channel of uint8 ids. GeoTIFF tiles keep every
band of the scene in its data type, its nodata and the tile's georeference (for a model with a
``RasterInput``); their masks are one-band uint8 GeoTIFFs with the labels' metadata. Pixels the
scene marks as nodata are ignore in the mask.
"""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.io import (
    open_raster,
    raster_bands,
    raster_has_validity,
    read_raster_window,
    write_png_atomic,
)
from geoseg.errors import DataError
from geoseg.inference.windows import tile_starts
from geoseg.maplabels.grid import SceneGrid
from geoseg.maplabels.label_raster import GDAL_CACHE_BYTES, attribution_tags

TILE_FORMATS = ("png", "tif")
IMAGE_DIR, MASK_DIR = "Train/images_png", "Train/masks_png"


@dataclass(frozen=True)
class TileSettings:
    """``tile_size`` pixels a side; tiles labelled below ``min_labelled_share`` are left out."""

    tile_size: int = 512
    min_labelled_share: float = 0.5
    tile_format: str = "png"

    def __post_init__(self):
        if self.tile_format not in TILE_FORMATS:
            raise ValueError(f"tile format {self.tile_format!r}: expected one of {TILE_FORMATS}")


def check_png_scene(path: Path) -> None:
    """A DataError unless the scene at ``path`` can be cut into PNG tiles (8-bit RGB, grey or
    RGB + alpha)."""
    with open_raster(path) as dataset:
        try:
            raster_bands(path, dataset)
        except DataError:
            raise DataError(
                f"{path}: {dataset.count} {dataset.dtypes[0]} bands; PNG tiles hold 8-bit RGB or "
                'grey only: write GeoTIFF tiles (tile format "tif") to keep every band'
            ) from None


def write_tiles(
    grid: SceneGrid, labels: Path, root: Path, settings: TileSettings, attribution: str
) -> tuple[int, int]:
    """Cut the scene ``grid`` and its label raster ``labels`` into tiles under ``root``'s
    ``Train/images_png`` and ``Train/masks_png``; (tiles kept, tiles left out)."""
    size = settings.tile_size
    for folder in (IMAGE_DIR, MASK_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)
    kept = left_out = 0
    with (
        rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES),
        open_raster(grid.path) as scene,
        rasterio.open(labels) as label_raster,
    ):
        bands = None if settings.tile_format == "tif" else raster_bands(grid.path, scene)
        for top in tile_starts(grid.height, size, 0):
            for left in tile_starts(grid.width, size, 0):
                window = Window(left, top, min(size, grid.width), min(size, grid.height))
                mask = label_raster.read(1, window=window)
                if raster_has_validity(scene):
                    mask[scene.dataset_mask(window=window) == 0] = IGNORE_INDEX
                if np.count_nonzero(mask != IGNORE_INDEX) < settings.min_labelled_share * mask.size:
                    left_out += 1
                    continue
                stem = f"{grid.stem}_{top}_{left}"
                if bands is None:
                    _write_tif(
                        root / IMAGE_DIR / f"{stem}.tif", scene, scene.read(window=window), window
                    )
                    _write_tif(
                        root / MASK_DIR / f"{stem}.tif",
                        label_raster,
                        mask[None],
                        window,
                        attribution,
                    )
                else:
                    image, _ = read_raster_window(grid.path, scene, bands, window)
                    write_png_atomic(root / IMAGE_DIR / f"{stem}.png", image)
                    write_png_atomic(root / MASK_DIR / f"{stem}.png", mask)
                kept += 1
    return kept, left_out


def _write_tif(
    path: Path, source, bands: np.ndarray, window: Window, attribution: str | None = None
) -> None:
    """``bands`` (count, h, w) of ``window`` of the raster ``source`` as a GeoTIFF with its
    georeference, data type and nodata."""
    profile = {
        "driver": "GTiff",
        "width": bands.shape[2],
        "height": bands.shape[1],
        "count": bands.shape[0],
        "dtype": bands.dtype,
        "crs": source.crs,
        "transform": source.window_transform(window),
        "nodata": source.nodata,
        "compress": "deflate",
    }
    with rasterio.open(path, "w", **profile) as tile:
        tile.write(bands)
        if attribution is not None:
            tile.update_tags(**attribution_tags(attribution))
