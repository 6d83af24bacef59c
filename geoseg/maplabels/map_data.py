"""Reading map data (any vector file GDAL reads, through pyogrio) into classed features.

Every layer of the file is read, only the features whose extent meets the scenes' (GDAL's spatial
filter) and only the columns the tag table reads. Tags are the layer's columns; GDAL's OSM driver
(``.osm.pbf``, ``.osm``) gives the common keys as columns and the rest in one ``other_tags``
string, which is parsed. Each feature takes its tag-table rule; polygons are kept as they are,
lines with the width they are buffered to, and what cannot be used is counted with the reason.
"""

import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.errors
import shapely
from pyogrio.raw import read
from rasterio.crs import CRS
from rasterio.errors import CRSError

from geoseg.errors import DataError
from geoseg.maplabels.grid import SceneGrid, reproject
from geoseg.maplabels.osm_tags import parse_lanes, parse_metres, parse_other_tags
from geoseg.maplabels.tag_table import Rule, TagTable

OTHER_TAGS = "other_tags"  # the OSM driver's column of the tags it has no column for
WIDTH_KEYS = ("width", "lanes")
POLYGON, LINE = "polygon", "line"
PYOGRIO_ERRORS = (pyogrio.errors.DataSourceError, pyogrio.errors.DataLayerError)


@dataclass
class FeatureCounts:
    """What became of the features read: ``used`` per tag ("building=yes"), ``skipped`` per
    reason, ``unmatched`` (no rule), and where the lines' widths came from."""

    read: int = 0
    unmatched: int = 0
    used: Counter = field(default_factory=Counter)
    skipped: Counter = field(default_factory=Counter)
    line_widths: Counter = field(default_factory=Counter)

    def as_dict(self) -> dict:
        return {
            "read": self.read,
            "used": sum(self.used.values()),
            "unmatched": self.unmatched,
            "used_per_tag": dict(sorted(self.used.items())),
            "skipped": dict(sorted(self.skipped.items())),
            "line_widths": dict(sorted(self.line_widths.items())),
        }


@dataclass
class MapFeatures:
    """The usable features, in file order: ``geometries`` in ``crs``, their ``bounds`` (N, 4),
    ``class_ids``, ``tiers`` (0 = the highest) and ``widths`` (metres a line is buffered to; NaN
    for polygons)."""

    path: Path
    crs: CRS
    geometries: np.ndarray
    bounds: np.ndarray
    class_ids: np.ndarray
    tiers: np.ndarray
    widths: np.ndarray
    counts: FeatureCounts

    def near(self, grid: SceneGrid, margin_px: float) -> np.ndarray:
        """The indices of the features whose extent meets ``grid`` grown by ``margin_px``."""
        west, south, east, north = grid.bounds_in(self.crs, margin_px)
        b = self.bounds
        meets = (b[:, 0] <= east) & (b[:, 2] >= west) & (b[:, 1] <= north) & (b[:, 3] >= south)
        return np.flatnonzero(meets)


def read_map_data(
    path: Path, table: TagTable, grids: list[SceneGrid], margin_m: float
) -> MapFeatures:
    """The features of the vector file ``path`` that the rules of ``table`` class, within
    ``margin_m`` metres of any of ``grids``. A missing or unreadable file, or a layer without a
    CRS, is a DataError naming it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: map data file not found")
    try:
        layers = [name for name, geometry_type in pyogrio.list_layers(path) if geometry_type]
    except PYOGRIO_ERRORS as error:
        raise DataError(f"{path}: unreadable map data ({error})") from error
    counts = FeatureCounts()
    parts, crs = [], None
    for layer in layers:
        layer_crs, part = _read_layer(path, layer, table, grids, margin_m, counts)
        crs = layer_crs if crs is None else crs
        geometries = reproject(part[0], layer_crs, crs)  # layers of other CRSs join the first's
        parts.append((geometries, *part[1:]))
    if crs is None:
        raise DataError(f"{path}: no layer with geometries; expected map data (a vector file)")
    geometries, class_ids, tiers, widths = (
        np.concatenate(arrays) for arrays in zip(*parts, strict=True)
    )
    bounds = shapely.bounds(geometries).reshape(-1, 4)
    return MapFeatures(
        path,
        crs,
        geometries,
        bounds,
        class_ids.astype(np.uint8),
        tiers.astype(np.int16),
        widths.astype(np.float64),
        counts,
    )


def _read_layer(
    path: Path,
    layer: str,
    table: TagTable,
    grids: list[SceneGrid],
    margin_m: float,
    counts: FeatureCounts,
) -> tuple[CRS, tuple]:
    """One layer's usable features: its CRS and (geometries, class ids, tiers, widths)."""
    try:
        info = pyogrio.read_info(path, layer=layer)
        crs = _crs(path, layer, info["crs"])
        bbox = _union(grid.bounds_in(crs, grid.metres_to_pixels(margin_m)) for grid in grids)
        wanted = table.keys | set(WIDTH_KEYS)
        osm = info["driver"] == "OSM"
        columns = [
            name for name in info["fields"] if name in wanted or (osm and name == OTHER_TAGS)
        ]
        with warnings.catch_warnings():  # GDAL's notes on rings it closed or polygons it fixed
            warnings.simplefilter("ignore", RuntimeWarning)
            meta, _, wkb, values = read(
                path, layer=layer, columns=columns, bbox=bbox, force_2d=True
            )
    except PYOGRIO_ERRORS as error:
        raise DataError(f"{path}: layer {layer!r} is unreadable ({error})") from error
    names = list(meta["fields"])
    # A ring of two points (a polygon cut at an extract's edge) is repaired, or None.
    geometries = shapely.from_wkb(wkb, on_invalid="fix")
    counts.read += len(geometries)
    kinds = _kinds(geometries)
    kept, class_ids, tiers, widths = [], [], [], []
    for index, kind in enumerate(kinds):
        tags = {name: _text(column[index]) for name, column in zip(names, values, strict=True)}
        if osm:
            tags = {**parse_other_tags(tags.pop(OTHER_TAGS, None)), **tags}
        rule = table.rule_for(tags)
        if rule is None:
            counts.unmatched += 1
            continue
        tag = f"{rule.key}={tags[rule.key]}"
        width = np.nan
        if kind == LINE:
            width = _line_width(table, rule, tags, counts)
            if width is None:
                counts.skipped[f"line without a width ({tag})"] += 1
                continue
        elif kind != POLYGON:
            counts.skipped[kind] += 1
            continue
        counts.used[tag] += 1
        kept.append(index)
        class_ids.append(rule.class_id)
        tiers.append(rule.tier)
        widths.append(width)
    arrays = (geometries[kept], np.array(class_ids), np.array(tiers), np.array(widths))
    return crs, arrays


def _line_width(table: TagTable, rule: Rule, tags: dict, counts: FeatureCounts) -> float | None:
    """A line's width in metres: its width tag, else lanes x the lane width, else the default of
    its tag; a tag that is there but unreadable is counted and falls back to the next."""
    if tags.get("width") is not None:
        width = parse_metres(tags["width"])
        if width is not None:
            counts.line_widths["width tag"] += 1
            return width
        counts.line_widths["bad width tag (fell back)"] += 1
    if tags.get("lanes") is not None:
        lanes = parse_lanes(tags["lanes"])
        if lanes is not None:
            counts.line_widths["lanes x lane width"] += 1
            return lanes * table.lane_width
        counts.line_widths["bad lanes tag (fell back)"] += 1
    width = table.default_width(rule.key, tags[rule.key])
    if width is not None:
        counts.line_widths["default of the tag"] += 1
    return width


def _kinds(geometries: np.ndarray) -> list[str]:
    """Per geometry: POLYGON, LINE, or why it cannot be burnt."""
    types = shapely.get_type_id(geometries)
    kinds = np.full(len(geometries), "other geometry (a collection)", dtype=object)
    kinds[np.isin(types, (3, 6))] = POLYGON
    kinds[np.isin(types, (1, 2, 5))] = LINE
    kinds[np.isin(types, (0, 4))] = "point"
    # Polygons cut at an extract's edge can collapse to a ring of two points: nothing to burn.
    kinds[(kinds == POLYGON) & (shapely.area(geometries) == 0)] = "polygon without area"
    kinds[(types < 0) | shapely.is_empty(geometries)] = "empty or broken geometry"
    return kinds.tolist()


def _crs(path: Path, layer: str, text: str | None) -> CRS:
    if not text:
        raise DataError(
            f"{path}: layer {layer!r} has no CRS; expected map data with its coordinate "
            "reference system (assign one, e.g. ogr2ogr -a_srs EPSG:4326)"
        )
    try:
        return CRS.from_user_input(text)
    except CRSError as error:
        raise DataError(f"{path}: layer {layer!r}: unknown CRS {text!r} ({error})") from error


def _union(boxes) -> tuple[float, float, float, float]:
    west, south, east, north = zip(*boxes, strict=True)
    return min(west), min(south), max(east), max(north)


def _text(value) -> str | None:
    """A column's value as tag text: None where missing; whole numbers without ".0"."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
