"""A scene's grid (CRS, transform, size, pixel size in metres) and moving geometries onto it."""

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio.warp
import shapely
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.transform import Affine

from geoseg.datasets.io import PixelSize, open_raster, pixel_size
from geoseg.errors import DataError


@dataclass(frozen=True)
class SceneGrid:
    """The grid of the GeoTIFF scene at ``path``: the label raster is written on exactly this
    grid. ``pixel``: the ground size of a pixel in metres."""

    path: Path
    crs: CRS
    transform: Affine
    width: int
    height: int
    pixel: PixelSize

    @classmethod
    def of(cls, path: Path) -> "SceneGrid":
        """The grid of the scene at ``path``; one without a CRS or a transform is a DataError."""
        with open_raster(path) as dataset:
            crs, transform = dataset.crs, dataset.transform
            width, height = dataset.width, dataset.height
        size = pixel_size(path)
        if crs is None or size is None:
            raise DataError(
                f"{path}: the scene has no CRS or no geotransform (or a CRS without a ground "
                "unit); map data can only be placed on a georeferenced scene"
            )
        return cls(path, crs, transform, width, height, size)

    @property
    def stem(self) -> str:
        return self.path.stem

    def metres_to_pixels(self, metres: float) -> float:
        """A distance in metres in pixels (of the smaller side where pixels are not square)."""
        return metres / min(self.pixel.x, self.pixel.y)

    def bounds_in(self, crs: CRS, margin_px: float = 0.0) -> tuple[float, float, float, float]:
        """(west, south, east, north) in ``crs`` of the scene grown by ``margin_px`` pixels on
        every side (the edges sampled, so a curved outline in ``crs`` is covered)."""
        corners = np.array([-margin_px, self.width + margin_px])
        cols, rows = np.meshgrid(corners, [-margin_px, self.height + margin_px])
        xs, ys = self.transform @ (cols.ravel(), rows.ravel())
        box = (min(xs), min(ys), max(xs), max(ys))
        if crs == self.crs:
            return box
        return rasterio.warp.transform_bounds(self.crs, crs, *box, densify_pts=21)

    def metric_crs(self) -> CRS:
        """Where lines are buffered in metres: the scene's CRS where it is projected, else (a
        geographic scene, in degrees) the UTM zone of its centre."""
        if not self.crs.is_geographic:
            return self.crs
        west, south, east, north = self.bounds_in(CRS.from_epsg(4326))
        longitude, latitude = (west + east) / 2, (south + north) / 2
        zone = min(int((longitude + 180) // 6) + 1, 60)
        return CRS.from_epsg((32600 if latitude >= 0 else 32700) + zone)

    def to_pixels(self, geometries: np.ndarray) -> np.ndarray:
        """``geometries`` in the scene's CRS -> in pixel coordinates (column, row) of the grid."""
        inverse = ~self.transform
        matrix = np.array([[inverse.a, inverse.d], [inverse.b, inverse.e]])
        offset = np.array([inverse.c, inverse.f])
        return shapely.transform(geometries, lambda xy: xy @ matrix + offset)


def metres_per_unit(crs: CRS) -> float:
    """The length in metres of one unit of the projected ``crs`` (1 for metres, 0.3048 for feet)."""
    try:
        return float(crs.linear_units_factor[1])
    except CRSError as error:
        raise DataError(
            f"CRS {crs}: no linear unit known, so widths in metres cannot be used"
        ) from error


def reproject(geometries: np.ndarray, source: CRS, target: CRS) -> np.ndarray:
    """``geometries`` (an array) from ``source`` to ``target``, every coordinate in one call."""
    if source == target:
        return geometries

    def move(xy: np.ndarray) -> np.ndarray:
        xs, ys = rasterio.warp.transform(source, target, xy[:, 0], xy[:, 1])
        return np.column_stack([xs, ys])

    return shapely.transform(geometries, move)


def finite(geometries: np.ndarray) -> np.ndarray:
    """Where ``geometries`` have finite bounds (a reprojection out of its CRS's area gives inf)."""
    return (
        np.isfinite(shapely.bounds(geometries)).all(axis=1) if len(geometries) else np.ones(0, bool)
    )
