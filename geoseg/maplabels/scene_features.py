"""Features placed on one scene's grid, in burning order, and burnt window by window.

Lines are buffered in metres (half their width each side, round ends and joins) in the scene's CRS
where it is projected, else in the UTM zone of the scene's centre, and everything is then moved
to the grid's pixel coordinates. Burning a window then only shifts by whole pixels, which is exact
in floating point: a window gives the pixels that burning the whole scene at once would give.
"""

from dataclasses import dataclass

import numpy as np
import rasterio.features
import shapely
from rasterio.transform import Affine

from geoseg.classes import IGNORE_INDEX
from geoseg.maplabels.grid import SceneGrid, finite, metres_per_unit, reproject
from geoseg.maplabels.map_data import MapFeatures

QUAD_SEGMENTS = 4  # segments per quarter circle of a line's round ends: enough at label precision


@dataclass
class SceneFeatures:
    """Features on ``grid`` in pixel coordinates, in the order they are burnt (each over the
    ones before): lowest tier first, within a tier larger first, then in file order; and an
    STRtree of them."""

    grid: SceneGrid
    geometries: np.ndarray
    class_ids: np.ndarray
    tree: shapely.STRtree

    @classmethod
    def place(cls, features: MapFeatures, grid: SceneGrid, indices: np.ndarray) -> "SceneFeatures":
        """The features ``indices`` of ``features`` (those ``features.near(grid)`` found)."""
        geometries = features.geometries[indices]
        widths = features.widths[indices]
        metric = grid.metric_crs()
        geometries = reproject(geometries, features.crs, metric)
        lines = ~np.isnan(widths)
        geometries[lines] = shapely.buffer(
            geometries[lines], widths[lines] / 2 / metres_per_unit(metric), quad_segs=QUAD_SEGMENTS
        )
        geometries = grid.to_pixels(reproject(geometries, metric, grid.crs))
        keep = finite(geometries)
        geometries, indices = geometries[keep], indices[keep]
        tiers = features.tiers[indices]
        order = np.lexsort((indices, -shapely.area(geometries), -tiers))
        geometries = geometries[order]
        return cls(
            grid, geometries, features.class_ids[indices][order], shapely.STRtree(geometries)
        )

    def __len__(self) -> int:
        return len(self.geometries)

    def burn(self, top: int, left: int, height: int, width: int) -> np.ndarray:
        """The (height, width) uint8 class ids of the window at (``top``, ``left``): the last
        feature burnt over a pixel's centre, ``IGNORE_INDEX`` where none covers it."""
        window = shapely.box(left, top, left + width, top + height)
        hits = np.sort(self.tree.query(window))  # back in burning order
        if not len(hits):
            return np.full((height, width), IGNORE_INDEX, np.uint8)
        return rasterio.features.rasterize(
            zip(self.geometries[hits], self.class_ids[hits].tolist(), strict=True),
            out_shape=(height, width),
            transform=Affine.translation(left, top),
            fill=IGNORE_INDEX,
            dtype=np.uint8,
        )
