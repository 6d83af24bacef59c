"""Georeferenced target scenes drawn from explicit shapes, and an OpenStreetMap file of those shapes
with the errors real maps have: data for learning from maps (weak labels) and for scoring them.

A scene is a square of target-domain land cover in ``MAP_CRS`` (UTM zone 35N) with the target's
1 m pixels (``TARGET_GSD_M``), every surface drawn with the target tiles' look
(``synthetic.paint_regions``). Its ground truth has object structure, as a map does:

- parcels: the scene cut by straight lines, again and again, until each parcel is smaller than a
  draw between 2,500 and 15,000 m², then warped by a smooth displacement so that borders and roads
  meander. Each parcel is one target class drawn with the target's frequencies (forest-dominated);
  a water parcel is grassland around a lake;
- roads: the first cuts, as lines 3 to 9 m wide (``highway`` secondary, tertiary, track), on top of
  the parcels they separate; a road ends on the road it leaves (a T junction) or at the edge;
- water: a lake (a noisy ellipse) in each water parcel, and a meandering river (8 to 14 m wide;
  in 60% of the scenes) and stream (2 to 4 m; 50%) across the scene and past its edges. Water gets
  the tiles' sand shore (class other), which no map feature covers;
- buildings: the built blocks of a settlement parcel's roofs, as the target tiles draw them
  (slivers under ``MIN_BUILDING_PX`` m², cut off by a parcel's edge or a road, are not mapped).

Painting order, which a map reader should follow to get the truth back: land cover, lakes, rivers
and streams, roads (bridges over rivers); buildings lie inside settlement parcels.

``map_features`` makes of a scene's shapes what a mapper would have mapped (``MapErrors``, its
defaults in brackets): each feature left out at random (areas: land cover, lakes and buildings
[0.2]; lines: roads and waterways [0.05]), so its pixels have no map label; simplified by
Douglas-Peucker [1.5 px]; shifted in a random direction by up to a few pixels [3 px], as traced
off imagery registered a little differently. A line's width is tagged as ``width`` in whole metres
[half of the lines], or for a road as ``lanes`` (its width / 3.5 m, rounded, at least 1) [0.3];
the rest carry no width, for a reader's default per ``highway`` or ``waterway``.

Tags (``AREA_TAGS``): forest ``landuse=forest`` or ``natural=wood``; grassland ``landuse=meadow``,
``landuse=grass``, ``natural=grassland``, ``natural=heath`` or ``natural=scrub``; cropland
``landuse=farmland``; settlement ``landuse=residential``; other ``natural=bare_rock``,
``natural=sand`` or ``landuse=quarry``; lakes ``natural=water`` with ``water=lake`` or ``pond``;
buildings ``building=yes``; roads ``highway=*``; waterways ``waterway=river`` or ``stream``.

``write_map_scenes(root)`` writes ``<root>/images/scene_<i>.tif`` (RGB, uint8),
``<root>/truth/scene_<i>.tif`` (target class ids, uint8; for scoring only) and ``<root>/map.osm``
(OpenStreetMap XML 0.6 in EPSG:4326: nodes, then closed ways for areas and open ways for lines, no
relations). Scene ``i`` lies ``2 i`` scene widths east of ``MAP_ORIGIN``, so no two scenes' features
meet. Scenes and map errors have their own random streams: the same seed draws the same scenes
whatever the error rates.
"""

import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from rasterio.features import shapes
from rasterio.transform import Affine, xy
from rasterio.warp import transform as reproject_points
from scipy.ndimage import map_coordinates

from geoseg.datasets.synthetic import (
    CLASS_FREQUENCIES,
    CROPLAND,
    FOREST,
    GRASSLAND,
    OEM_BUILDING,
    OEM_ROAD,
    OTHER,
    SETTLEMENT,
    SURFACE_TO_TARGET,
    TARGET_GSD_M,
    TARGET_STYLE,
    TARGET_SURFACES,
    WATER,
    Surface,
    paint_regions,
    smooth_noise,
    write_geotiff,
)
from geoseg.files import write_text_atomic

MAP_CRS = "EPSG:32635"
# The north-west corner of scene 0 (UTM 35N metres): southern Finland, a forested place.
MAP_ORIGIN = (500_000.0, 6_700_000.0)
# Random streams of the scenes and of their maps' errors, apart from the tiles' streams.
SCENE_STREAM, MAP_ERROR_STREAM = 2000, 2001

PARCEL_AREA_PX = (2_500, 15_000)  # a parcel is cut again while larger than a draw from this range
# Cuts at depth d are roads with chance ROAD_CHANCE[d], of highway type and width (m) ROADS[d].
ROAD_CHANCE = (1.0, 0.8, 0.5)
ROADS = (("secondary", (7, 9)), ("tertiary", (5, 7)), ("track", (3, 4)))
# Waterways crossing a scene: type, chance, width range (m).
WATERWAYS = (("river", 0.6, (8, 14)), ("stream", 0.5, (2, 4)))
# The displacement that bends parcels and roads: amplitude and feature size in pixels.
WARP_PX, WARP_CELL_PX = 10.0, 120.0
MIN_BUILDING_PX = 6  # smaller slivers of roof (cut by a parcel's edge) are no building to map
LANE_WIDTH_M = 3.5

# The tags a mapper may give a land-cover area of each target class, one drawn per area.
AREA_TAGS: dict[int, tuple[dict[str, str], ...]] = {
    FOREST: ({"landuse": "forest"}, {"natural": "wood"}),
    GRASSLAND: (
        {"landuse": "meadow"},
        {"landuse": "grass"},
        {"natural": "grassland"},
        {"natural": "heath"},
        {"natural": "scrub"},
    ),
    CROPLAND: ({"landuse": "farmland"},),
    SETTLEMENT: ({"landuse": "residential"},),
    OTHER: ({"natural": "bare_rock"}, {"natural": "sand"}, {"landuse": "quarry"}),
}
# A road is drawn as a region of street, in the settlement's colours.
ROAD_LOOK = replace(TARGET_SURFACES[SETTLEMENT], texture="street", labels=((OEM_ROAD, "streets"),))


@dataclass(frozen=True)
class MapFeature:
    """One object of a scene: a polygon (``width`` 0) or a line ``width`` metres wide."""

    points: np.ndarray  # (N, 2) x, y in pixels from the scene's top-left corner; rings not closed
    tags: dict[str, str]  # OpenStreetMap tags
    width: int = 0

    @property
    def is_line(self) -> bool:
        return self.width > 0


class MapScene(NamedTuple):
    """One scene: its image, ground truth and the shapes it was drawn from."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    mask: np.ndarray  # (size, size) uint8 target class ids (no ignore)
    features: list[MapFeature]


@dataclass(frozen=True)
class MapErrors:
    """What a mapper gets wrong; shares are per feature, distances in pixels (metres here)."""

    omitted_areas: float = 0.2  # land cover, lakes and buildings not mapped at all
    omitted_lines: float = 0.05  # roads and waterways not mapped at all
    simplify_px: float = 1.5  # Douglas-Peucker tolerance of every outline and line
    max_shift_px: float = 3.0  # each feature shifted by up to this much (registration)
    width_tagged: float = 0.5  # lines whose width is tagged (``width``, whole metres)
    lanes_tagged: float = 0.3  # roads tagged with ``lanes`` instead

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if value < 0 or (field.name not in ("simplify_px", "max_shift_px") and value > 1):
                raise ValueError(f"MapErrors.{field.name}={value}: expected a share in [0, 1]")
        if self.width_tagged + self.lanes_tagged > 1:
            raise ValueError(
                f"MapErrors: width_tagged + lanes_tagged = "
                f"{self.width_tagged + self.lanes_tagged}; expected at most 1"
            )


def _area(polygon: np.ndarray) -> float:
    x, y = polygon.T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _cut(polygon: np.ndarray, point: np.ndarray, normal: np.ndarray):
    """Cut a convex polygon by the line through ``point`` normal to ``normal``: both halves and the
    cut, a (2, 2) segment."""
    side = (polygon - point) @ normal
    halves, cut = ([], []), []
    for i, a in enumerate(polygon):
        j = (i + 1) % len(polygon)
        halves[int(side[i] > 0)].append(a)
        if (side[i] > 0) != (side[j] > 0):
            crossing = a + (polygon[j] - a) * side[i] / (side[i] - side[j])
            halves[0].append(crossing)
            halves[1].append(crossing)
            cut.append(crossing)
    return np.array(halves[0]), np.array(halves[1]), np.array(cut)


def _parcels(rng: np.random.Generator, size: int):
    """Cut the scene into convex parcels, across each one's longest extent; the first cuts are
    roads. Returns the parcels and the roads as (segment, depth)."""
    parcels, roads = [], []
    # Past the scene's edges by more than the warp moves a point, so the warped parcels cover it.
    low, high = -2 * WARP_PX, size + 2 * WARP_PX
    todo = [(np.array([[low, low], [high, low], [high, high], [low, high]]), 0)]
    while todo:
        polygon, depth = todo.pop()
        if _area(polygon) < rng.uniform(*PARCEL_AREA_PX):
            parcels.append(polygon)
            continue
        centre = polygon.mean(axis=0)
        _, axes = np.linalg.eigh(np.cov((polygon - centre).T))
        angle = math.atan2(axes[1, 1], axes[0, 1]) + rng.uniform(-0.3, 0.3)
        normal = np.array([math.cos(angle), math.sin(angle)])
        extent = np.ptp((polygon - centre) @ normal)
        point = centre + normal * extent * rng.uniform(-0.2, 0.2)
        first, second, cut = _cut(polygon, point, normal)
        if depth < len(ROADS) and rng.random() < ROAD_CHANCE[depth]:
            roads.append((cut, depth))
        todo += [(first, depth + 1), (second, depth + 1)]
    return parcels, roads


def _densify(points: np.ndarray, step: float, closed: bool) -> np.ndarray:
    """``points`` with more on every segment, at most ``step`` apart, so a warp bends them."""
    ends = np.roll(points, -1, axis=0) if closed else points[1:]
    dense = []
    for a, b in zip(points, ends, strict=False):
        count = max(int(np.ceil(np.linalg.norm(b - a) / step)), 1)
        dense.append(a + (b - a) * np.arange(count)[:, None] / count)
    if not closed:
        dense.append(points[-1:])
    return np.concatenate(dense)


def _warp(points: np.ndarray, displacement: np.ndarray) -> np.ndarray:
    """Move ``points`` ((N, 2) x, y) by the (2, size, size) field ``displacement`` at them."""
    at = [points[:, 1] - 0.5, points[:, 0] - 0.5]  # rows, columns of pixel centres
    moves = [map_coordinates(field, at, order=1, mode="nearest") for field in displacement]
    return points + np.stack(moves, axis=1)


def _lake(rng: np.random.Generator, parcel: np.ndarray) -> np.ndarray | None:
    """A noisy ellipse well inside a convex parcel, or None if the parcel is too thin for one."""
    centre = parcel.mean(axis=0)
    edges = np.roll(parcel, -1, axis=0) - parcel
    normals = np.stack([edges[:, 1], -edges[:, 0]], axis=1) / np.linalg.norm(edges, axis=1)[:, None]
    inradius = np.abs(((centre - parcel) * normals).sum(axis=1)).min()
    if inradius < 8:
        return None
    theta = np.linspace(0, 2 * np.pi, 48, endpoint=False)
    squash, turn = rng.uniform(0.6, 1.0), rng.uniform(0, np.pi)
    wobble = 1 + 0.15 * np.sin(3 * theta + rng.uniform(0, 2 * np.pi))
    wobble += 0.08 * np.sin(5 * theta + rng.uniform(0, 2 * np.pi))
    radius = 0.65 * inradius * wobble
    x, y = radius * np.cos(theta), squash * radius * np.sin(theta)
    rotated = np.stack([x * np.cos(turn) - y * np.sin(turn), x * np.sin(turn) + y * np.cos(turn)])
    return centre + rotated.T


def _waterway(rng: np.random.Generator, size: int) -> np.ndarray:
    """A meandering line across the scene and beyond its edges: (N, 2) x, y."""
    angle = rng.uniform(0, np.pi)
    along = np.array([math.cos(angle), math.sin(angle)])
    across = np.array([-along[1], along[0]])
    centre = size * (0.5 + rng.uniform(-0.25, 0.25, 2))
    t = np.arange(-0.75 * size, 0.75 * size, 4.0)
    wavelength, amplitude = size * rng.uniform(0.3, 0.6), size * rng.uniform(0.03, 0.08)
    phases = rng.uniform(0, 2 * np.pi, 2)
    offset = amplitude * np.sin(2 * np.pi * t / wavelength + phases[0])
    offset += 0.4 * amplitude * np.sin(2 * np.pi * t / (0.37 * wavelength) + phases[1])
    return centre + t[:, None] * along + offset[:, None] * across


def _buildings(oem: np.ndarray, regions: np.ndarray) -> list[MapFeature]:
    """Each built block of roofs (per region, 4-connected) as a polygon along its pixels' edges."""
    built = oem == OEM_BUILDING
    key = np.where(built, regions + 1, 0).astype(np.int32)
    buildings = []
    for geometry, _ in shapes(key, mask=built, connectivity=4):
        ring = np.array(geometry["coordinates"][0][:-1], dtype=float)  # holes are not mapped
        if _area(ring) >= MIN_BUILDING_PX:
            buildings.append(MapFeature(ring, {"building": "yes"}))
    return buildings


def synthesize_map_scene(rng: np.random.Generator, size: int = 512) -> MapScene:
    """One target-domain scene of ``size`` x ``size`` pixels drawn from shapes, with the shapes."""
    parcels, cuts = _parcels(rng, size)
    displacement = np.stack([WARP_PX * smooth_noise(rng, size, WARP_CELL_PX) for _ in range(2)])
    classes = rng.choice(len(CLASS_FREQUENCIES), size=len(parcels), p=CLASS_FREQUENCIES)
    regions = np.full((size, size), -1, dtype=np.int32)
    looks: list[Surface] = []
    features: list[MapFeature] = []

    def paint(points: np.ndarray, look: Surface, width: int = 0) -> None:
        # OpenCV draws at pixel centres, with 4 fractional bits.
        at = np.round((points - 0.5) * 16).astype(np.int32)
        if width:
            cv2.polylines(regions, [at], False, len(looks), thickness=width, shift=4)
        else:
            cv2.fillPoly(regions, [at], len(looks), shift=4)
        looks.append(look)

    lakes = []
    for parcel, kind in zip(parcels, classes, strict=True):
        if kind == WATER:
            lakes.append(_lake(rng, parcel))
            kind = GRASSLAND
        outline = _warp(_densify(parcel, 8, closed=True), displacement)
        paint(outline, TARGET_SURFACES[kind])
        options = AREA_TAGS[int(kind)]
        features.append(MapFeature(outline, dict(options[rng.integers(len(options))])))
    for lake in lakes:
        if lake is None:
            continue
        outline = _warp(lake, displacement)
        paint(outline, TARGET_SURFACES[WATER])
        water = "pond" if _area(outline) < 2_000 else "lake"
        features.append(MapFeature(outline, {"natural": "water", "water": water}))
    for waterway, chance, widths in WATERWAYS:
        if rng.random() < chance:
            line, width = _waterway(rng, size), int(rng.integers(widths[0], widths[1] + 1))
            paint(line, TARGET_SURFACES[WATER], width)
            features.append(MapFeature(line, {"waterway": waterway}, width))
    for cut, depth in cuts:
        highway, widths = ROADS[depth]
        width = int(rng.integers(widths[0], widths[1] + 1))
        line = _warp(_densify(cut, 8, closed=False), displacement)
        paint(line, ROAD_LOOK, width)
        features.append(MapFeature(line, {"highway": highway}, width))

    image, oem, surface = paint_regions(rng, regions, looks, TARGET_STYLE)
    features += _buildings(oem, regions)
    return MapScene(image, SURFACE_TO_TARGET[surface], features)


def map_features(
    features: list[MapFeature], rng: np.random.Generator, errors: MapErrors = MapErrors()
) -> list[MapFeature]:
    """What a mapper maps of ``features``: some left out, the rest simplified, shifted and, for a
    line, its width tagged or not (``MapErrors``)."""
    mapped = []
    for feature in features:
        # The same four draws per feature, so that one rate changes only what it governs.
        omit, direction, distance, tagging = rng.random(4)
        if omit < (errors.omitted_lines if feature.is_line else errors.omitted_areas):
            continue
        points = feature.points.astype(np.float32)[:, None]
        simple = cv2.approxPolyDP(points, errors.simplify_px, closed=not feature.is_line)[:, 0]
        if len(simple) >= (2 if feature.is_line else 3):
            points = simple
        angle = 2 * np.pi * direction
        shift = errors.max_shift_px * distance * np.array([math.cos(angle), math.sin(angle)])
        tags = dict(feature.tags)
        if feature.is_line and tagging < errors.width_tagged:
            tags["width"] = str(feature.width)
        elif "highway" in tags and tagging < errors.width_tagged + errors.lanes_tagged:
            tags["lanes"] = str(max(round(feature.width / LANE_WIDTH_M), 1))
        mapped.append(MapFeature(points.reshape(-1, 2).astype(float) + shift, tags, feature.width))
    return mapped


def scene_transform(index: int, size: int) -> Affine:
    """Where scene ``index`` lies in ``MAP_CRS``: 1 m pixels, ``2 * index`` scene widths east of
    ``MAP_ORIGIN``."""
    west = MAP_ORIGIN[0] + 2 * index * size * TARGET_GSD_M
    return Affine(TARGET_GSD_M, 0.0, west, 0.0, -TARGET_GSD_M, MAP_ORIGIN[1])


def osm_xml(scenes: list[tuple[Affine, list[MapFeature]]], crs: str = MAP_CRS) -> str:
    """An OpenStreetMap XML 0.6 document of the features of every (transform, features) scene,
    their pixel coordinates placed by the transform in ``crs`` and written in EPSG:4326."""
    nodes, ways = [], []
    for transform, features in scenes:
        if not features:  # all left out
            continue
        points = np.concatenate([feature.points for feature in features])
        xs, ys = xy(transform, points[:, 1], points[:, 0], offset="ul")  # rows, columns
        lons, lats = reproject_points(crs, "EPSG:4326", xs, ys)
        start = len(nodes) + 1
        nodes += zip(lats, lons, strict=True)
        for feature in features:
            refs = list(range(start, start + len(feature.points)))
            start += len(feature.points)
            ways.append((refs if feature.is_line else [*refs, refs[0]], feature.tags))
    root = ET.Element("osm", version="0.6", generator="geoseg.datasets.synthetic_maps")
    if nodes:
        (south, west), (north, east) = np.min(nodes, axis=0), np.max(nodes, axis=0)
        bounds = {"minlat": south, "minlon": west, "maxlat": north, "maxlon": east}
        ET.SubElement(root, "bounds", {key: f"{value:.7f}" for key, value in bounds.items()})
    for node_id, (lat, lon) in enumerate(nodes, start=1):
        ET.SubElement(
            root, "node", id=str(node_id), version="1", lat=f"{lat:.7f}", lon=f"{lon:.7f}"
        )
    for way_id, (refs, tags) in enumerate(ways, start=1):
        way = ET.SubElement(root, "way", id=str(way_id), version="1")
        for ref in refs:
            ET.SubElement(way, "nd", ref=str(ref))
        for key, value in tags.items():
            ET.SubElement(way, "tag", k=key, v=value)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_map_scenes(
    output_root: str | Path,
    *,
    scenes: int = 4,
    size: int = 512,
    seed: int = 0,
    errors: MapErrors = MapErrors(),
) -> dict[str, tuple[int, int]]:
    """Write ``scenes`` scenes of ``size`` pixels, their truth and one map of them under
    ``output_root`` (the module's docstring gives the layout). Returns, for ``areas`` and
    ``lines``, how many features the scenes hold and how many the map has."""
    output_root = Path(output_root)
    (output_root / "images").mkdir(parents=True, exist_ok=True)
    (output_root / "truth").mkdir(parents=True, exist_ok=True)
    mapped_scenes = []
    counts = {"areas": [0, 0], "lines": [0, 0]}
    for index in range(scenes):
        scene = synthesize_map_scene(np.random.default_rng([seed, SCENE_STREAM, index]), size)
        transform = scene_transform(index, size)
        name = f"scene_{index:04d}.tif"
        write_geotiff(output_root / "images" / name, scene.image, transform, MAP_CRS)
        write_geotiff(output_root / "truth" / name, scene.mask, transform, MAP_CRS)
        error_rng = np.random.default_rng([seed, MAP_ERROR_STREAM, index])
        mapped = map_features(scene.features, error_rng, errors)
        mapped_scenes.append((transform, mapped))
        for drawn_or_mapped, features in enumerate((scene.features, mapped)):
            for feature in features:
                counts["lines" if feature.is_line else "areas"][drawn_or_mapped] += 1
    write_text_atomic(output_root / "map.osm", osm_xml(mapped_scenes))
    return {kind: (drawn, mapped) for kind, (drawn, mapped) in counts.items()}
