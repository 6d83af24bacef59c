"""Weak labels from map data: OpenStreetMap (or any vector data GDAL reads) burnt onto the grid of
each GeoTIFF scene through a tag-to-class table, with ignore where the map says nothing or is least
reliable, cut into training tiles of the target layout.

- ``tag_table``: the table (a Python config module), checked; ``osm_tags``: tag values
- ``map_data``: reading the vector file into classed features
- ``grid``: a scene's grid, reprojection; ``scene_features``: features placed on it, burnt
- ``boundary``: the ignore band; ``label_raster``: the label GeoTIFF, window by window
- ``tiles``: training tiles; ``job``: the whole run (``make_map_labels``)
"""

from geoseg.maplabels.job import (
    LABELS_DIR,
    SUMMARY_FILE,
    MapLabelSettings,
    find_scenes,
    make_map_labels,
)
from geoseg.maplabels.label_raster import ATTRIBUTION_TAG, WINDOW_SIZE
from geoseg.maplabels.tag_table import TagTable, load_tag_table
from geoseg.maplabels.tiles import TILE_FORMATS, TileSettings

__all__ = [
    "ATTRIBUTION_TAG",
    "LABELS_DIR",
    "SUMMARY_FILE",
    "TILE_FORMATS",
    "WINDOW_SIZE",
    "MapLabelSettings",
    "TagTable",
    "TileSettings",
    "find_scenes",
    "load_tag_table",
    "make_map_labels",
]
