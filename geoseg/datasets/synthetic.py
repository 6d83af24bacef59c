"""Synthetic land-cover tiles in the real layouts, so the pipeline and its tests run anywhere.

Each tile is a mosaic of irregular regions (a warped Voronoi partition of varied region sizes),
each region one surface drawn with its domain's colour and texture for it. Some tiles carry a
no-data strip (black pixels, ignore/void in the labels) as real acquisitions do at swath edges.

Two domains. The target (``biodiversity``: PNG tiles, the six target classes, forest-dominated):
forest is dark, blotchy canopy; grassland smooth, light green; cropland striped parcels; settlement
grey blocks of roofs and roads; water smooth blue with a sandy shore (labelled other, like bare
land); other bare brown soil. Colours overlap between the vegetation classes, so a model must use
texture and context. Its nominal ground sampling distance is ``TARGET_GSD_M``.

The second domain (``OpenEarthMap``) is written in the OpenEarthMap release layout with its nine
classes (settlement split into developed space, road and building), ``.tif`` files, split lists,
and a few images left out as in the public release (xBD regions). How far it is from the target is
the domain gap setting (``--domain-gap``, ``write_openearthmap_release(domain_gap=...)``):

- ``mild``: the target's world and labels, one to one, under another colour balance and brightness
  with finer pixels (scale 1.5). The files are those this generator wrote before the setting
  existed, byte for byte (OpenCV TIFFs without georeference). Pretraining on it helps by
  construction.
- ``strong`` (the default): a second dataset that differs as real ones do (an aerial survey of an
  arid region on another continent against a satellite target). Every surface has its own colour
  and texture: desert sand with dunes; light brown gravelly soil; olive shrubland and woodland;
  dry, patchy grass; cropland as large irrigated circles and blocks (not narrow stripes);
  settlement as large light (sandy/white) flat roofs in plots along wide streets; turquoise
  water with white sand shores. Its class mix differs: hardly any forest-like cover and no tree
  label (id 5 unused), lots of desert. Its pixels are finer (scale 2.0: ``TARGET_GSD_M / 2``), and
  the tiles are GeoTIFFs with that pixel size in their transform (EPSG:32633), so tools can read
  it. Its labels do not map one to one onto the target's: rangeland covers forest-like shrubland
  and woodland as well as grass (the default remap makes both grassland), and bareland covers
  desert sand, a surface the target never shows (the remap makes it other, which in the target is
  brown soil and shores).

The strong style's labels, ``describe_labels(OEM_STYLES["strong"])`` (OpenEarthMap id, name: what
it covers -> the target class under ``classes.OEM_TO_TARGET``):

0 void: no-data strips -> ignore
1 bareland: light brown gravelly soil; desert sand with dunes; white sand shores -> other
2 rangeland: olive shrubland and woodland (forest-like canopy); dry, patchy grass -> grassland
3 developed space: sandy yards and car parks between buildings -> settlement
4 road: wide streets -> settlement
5 tree: not used -> forest
6 water: turquoise water -> water
7 agriculture land: irrigated circles and blocks at varied growth stages -> cropland
8 building: large light (sandy/white) flat roofs -> settlement

Besides the image and both label maps, ``synthesize_tile`` returns the surface of every pixel
(``SURFACES``): what is on the ground, whatever a dataset calls it.

``python -m geoseg.datasets.synthetic --output-root data/demo [--domain-gap mild|strong]`` writes
``data/demo/biodiversity`` (target layout) and ``data/demo/OpenEarthMap`` (release layout).
``--map-scenes N`` (the demo writes 4) adds ``data/demo/map_scenes``, for learning from maps
(``synthetic_maps``): ``images/scene_<i>.tif``, N georeferenced target-domain scenes of
``--map-scene-size`` pixels (512, 1 m, EPSG:32635) drawn from shapes with the tiles' looks;
``truth/scene_<i>.tif``, their class ids, for scoring only; and ``map.osm``, an OpenStreetMap
file of those shapes (EPSG:4326) with the errors real maps have: features left out (20% of areas,
5% of lines), outlines shifted (up to 3 px) and simplified (Douglas-Peucker, 1.5 px), roads and
waterways as lines whose width is tagged as ``width`` or ``lanes``, or not at all. The other
datasets are the same files with or without it.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
import rasterio
from rasterio.transform import Affine

from geoseg.classes import CLASSES, IGNORE_INDEX, NUM_CLASSES, OEM_CLASSES, OEM_TO_TARGET
from geoseg.cli import ArgumentParser, at_least
from geoseg.datasets.io import write_png_atomic

# The synthetic world is drawn for the default scheme's six classes; their ids come from it.
OTHER, FOREST, GRASSLAND, CROPLAND, SETTLEMENT, WATER = (
    CLASSES.index(name)
    for name in ("other", "forest", "grassland", "cropland", "settlement", "water")
)
# Two more surfaces: desert sand (the target has none) and the sand shore around water bodies.
DESERT, SHORE = NUM_CLASSES, NUM_CLASSES + 1
SURFACES: tuple[str, ...] = (*CLASSES, "desert", "shore")
# The target class of each surface: what a target annotator calls it.
SURFACE_TO_TARGET = np.array([*range(NUM_CLASSES), OTHER, OTHER], dtype=np.uint8)
# OpenEarthMap ids (classes.OEM_CLASSES).
OEM_VOID, OEM_BARELAND, OEM_RANGELAND, OEM_DEVELOPED, OEM_ROAD = 0, 1, 2, 3, 4
OEM_TREE, OEM_WATER, OEM_AGRICULTURE, OEM_BUILDING = 5, 6, 7, 8

# Nominal ground sampling distance of the target tiles; a style's ``scale`` divides it.
TARGET_GSD_M = 1.0
# The second domain's GeoTIFFs are placed in UTM zone 33N (metres); the place itself is nominal.
OEM_CRS = "EPSG:32633"


@dataclass(frozen=True)
class Surface:
    """One kind of land cover as a domain draws and labels it."""

    kind: int  # the surface id (SURFACES)
    mean: tuple[float, float, float]  # mean RGB of a region
    spread: float  # standard deviation of a region's colour around ``mean``
    texture: str  # a key of TEXTURES
    # OpenEarthMap ids it is labelled with, each with what of the surface it covers; several for
    # a texture that tells them apart (settlement: roofs, streets, yards).
    labels: tuple[tuple[int, str], ...]


# The target's surfaces, indexed by their class id.
TARGET_SURFACES = (
    Surface(OTHER, (150, 120, 90), 20, "soil", ((OEM_BARELAND, "brown bare soil"),)),
    Surface(FOREST, (50, 85, 45), 15, "canopy", ((OEM_TREE, "dark, blotchy forest canopy"),)),
    Surface(GRASSLAND, (95, 135, 70), 20, "grass", ((OEM_RANGELAND, "smooth, light green grass"),)),
    Surface(CROPLAND, (130, 140, 80), 25, "stripes", ((OEM_AGRICULTURE, "striped parcels"),)),
    Surface(
        SETTLEMENT,
        (150, 140, 135),
        20,
        "roofs",
        ((OEM_DEVELOPED, "yards and car parks"), (OEM_ROAD, "streets"), (OEM_BUILDING, "roofs")),
    ),
    Surface(WATER, (40, 70, 110), 15, "calm", ((OEM_WATER, "smooth blue water"),)),
)
# How often each target surface is drawn for a region: forest-dominated, as in the target data.
CLASS_FREQUENCIES = np.array([0.08, 0.32, 0.2, 0.18, 0.14, 0.08])

# The strong second domain: an arid region, its own colours and textures, and its own labels.
STRONG_SURFACES = (
    Surface(OTHER, (185, 155, 120), 15, "soil", ((OEM_BARELAND, "light brown gravelly soil"),)),
    Surface(
        FOREST,
        (90, 100, 60),
        12,
        "canopy",
        ((OEM_RANGELAND, "olive shrubland and woodland (forest-like canopy)"),),
    ),
    Surface(GRASSLAND, (160, 150, 95), 15, "steppe", ((OEM_RANGELAND, "dry, patchy grass"),)),
    Surface(
        CROPLAND,
        (70, 140, 55),
        15,
        "pivots",
        ((OEM_AGRICULTURE, "irrigated circles and blocks at varied growth stages"),),
    ),
    Surface(
        SETTLEMENT,
        (215, 205, 185),
        12,
        "villas",
        (
            (OEM_DEVELOPED, "sandy yards and car parks between buildings"),
            (OEM_ROAD, "wide streets"),
            (OEM_BUILDING, "large light (sandy/white) flat roofs"),
        ),
    ),
    Surface(WATER, (40, 150, 160), 12, "calm", ((OEM_WATER, "turquoise water"),)),
    Surface(DESERT, (225, 200, 155), 12, "dunes", ((OEM_BARELAND, "desert sand with dunes"),)),
)


@dataclass(frozen=True)
class DomainStyle:
    """How a sensor/dataset renders and labels land cover."""

    surfaces: tuple[Surface, ...] = TARGET_SURFACES  # what a region can be
    frequencies: tuple[float, ...] = tuple(CLASS_FREQUENCIES)  # how often each of ``surfaces``
    color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-band colour balance
    brightness: float = 0.0  # added to every band
    scale: float = 1.0  # ground sampling: >1 means finer pixels, so objects look larger
    noise: float = 6.0  # sensor noise, standard deviation in grey levels
    shore_color: tuple[float, float, float] = (175, 160, 125)  # mean RGB of the band around water
    shore_label: str = "sandy shores"  # what its shore is, as describe_labels says

    def __post_init__(self) -> None:
        if len(self.frequencies) != len(self.surfaces):
            raise ValueError(
                f"DomainStyle: {len(self.surfaces)} surfaces but {len(self.frequencies)} "
                "frequencies; give one frequency per surface"
            )

    @property
    def gsd_m(self) -> float:
        """Ground sampling distance of the style's tiles in metres per pixel."""
        return TARGET_GSD_M / self.scale


TARGET_STYLE = DomainStyle()
OEM_STYLES = {
    # Today's demo: the target's world, warmer, brighter, finer, more built-up.
    "mild": DomainStyle(
        color_gain=(1.12, 1.0, 0.86),
        brightness=10.0,
        scale=1.5,
        noise=4.0,
        frequencies=(0.1, 0.22, 0.2, 0.16, 0.24, 0.08),
    ),
    # Frequencies in STRONG_SURFACES' order: other, forest-like, grass, crops, settlement, water,
    # desert.
    "strong": DomainStyle(
        surfaces=STRONG_SURFACES,
        frequencies=(0.08, 0.05, 0.2, 0.15, 0.22, 0.05, 0.25),
        scale=2.0,
        noise=4.0,
        shore_color=(235, 225, 200),
        shore_label="white sand shores",
    ),
}
DOMAIN_GAPS = tuple(OEM_STYLES)


def describe_labels(style: DomainStyle) -> str:
    """What each OpenEarthMap id covers in ``style``'s tiles and the target class the default remap
    makes of it, one line per id."""
    lines = []
    for oem_id, name in enumerate(OEM_CLASSES):
        covers = [text for s in style.surfaces for label, text in s.labels if label == oem_id]
        if oem_id == OEM_VOID:
            covers.append("no-data strips")
        if oem_id == OEM_BARELAND:
            covers.append(style.shore_label)
        target = OEM_TO_TARGET[oem_id]
        target_name = "ignore" if target == IGNORE_INDEX else CLASSES[target]
        lines.append(f"{oem_id} {name}: {'; '.join(covers) or 'not used'} -> {target_name}")
    return "\n".join(lines)


def smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
    """Value noise in [-1, 1] with features about ``cell`` pixels wide: (size, size) float32."""
    cells = max(int(size / cell), 1) + 2
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _region_map(rng: np.random.Generator, size: int, num_regions: int) -> np.ndarray:
    """An irregular partition of the tile into regions of varied size: (size, size) int ids."""
    seeds = rng.uniform(0, size, (num_regions, 2))
    # Additive weights make some regions swallow their neighbours (a power diagram).
    weights = rng.uniform(0, (0.3 * size) ** 2, num_regions)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Warp the coordinates so the region borders meander instead of being straight.
    yy += 0.08 * size * smooth_noise(rng, size, max(size / 4, 2))
    xx += 0.08 * size * smooth_noise(rng, size, max(size / 4, 2))
    distances = (yy[None] - seeds[:, 0, None, None]) ** 2 + (
        xx[None] - seeds[:, 1, None, None]
    ) ** 2
    return (distances - weights[:, None, None]).argmin(axis=0)


# A texture: (rng, size, scale) -> brightness modulation over the tile, (size, size) float32
# around 0, and for a surface labelled with several ids the OpenEarthMap id of each pixel (else
# None).
Texture = Callable[[np.random.Generator, int, float], tuple[np.ndarray, np.ndarray | None]]


def _canopy(rng: np.random.Generator, size: int, scale: float):
    texture = 0.35 * smooth_noise(rng, size, 3 * scale) + 0.15 * smooth_noise(rng, size, 8 * scale)
    return texture, None


def _grass(rng: np.random.Generator, size: int, scale: float):
    return 0.12 * smooth_noise(rng, size, 12 * scale), None


def _stripes(rng: np.random.Generator, size: int, scale: float):
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(4, 8) * scale
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    return (0.2 * np.sin(phase)).astype(np.float32), None


# How much darker than its settlement's roofs a street is.
STREET_TONE = -0.35


def _roofs(rng: np.random.Generator, size: int, scale: float):
    block = max(int(rng.integers(6, 11) * scale), 4)
    street = max(int(round(2 * scale)), 1)
    yy, xx = np.mgrid[0:size, 0:size]
    streets = (yy % block < street) | (xx % block < street)
    blocks = (size // block + 1, size // block + 1)
    roofs = rng.uniform(-0.3, 0.3, blocks)
    built = rng.random(blocks) < 0.7  # the other blocks are yards and car parks
    texture = roofs[yy // block, xx // block].astype(np.float32)
    texture[streets] = STREET_TONE
    detail = np.where(built[yy // block, xx // block], OEM_BUILDING, OEM_DEVELOPED)
    detail[streets] = OEM_ROAD
    return texture, detail.astype(np.uint8)


def _street(rng: np.random.Generator, size: int, scale: float):
    # A region that is all street (a road of a map scene), toned as the roofs texture tones its own.
    texture = np.full((size, size), STREET_TONE, dtype=np.float32)
    return texture, np.full((size, size), OEM_ROAD, dtype=np.uint8)


def _calm(rng: np.random.Generator, size: int, scale: float):
    return 0.04 * smooth_noise(rng, size, 16 * scale), None


def _soil(rng: np.random.Generator, size: int, scale: float):
    return 0.15 * smooth_noise(rng, size, 6 * scale), None


def _steppe(rng: np.random.Generator, size: int, scale: float):
    # Tufts of dry grass with bare patches between them.
    texture = 0.18 * smooth_noise(rng, size, 3 * scale) + 0.1 * smooth_noise(rng, size, 10 * scale)
    return texture, None


def _pivots(rng: np.random.Generator, size: int, scale: float):
    # Fields on a grid, each at its own growth stage: centre-pivot circles or square blocks, with
    # dry, lighter ground between them.
    pitch = rng.uniform(16, 26) * scale
    offset = rng.uniform(0, pitch, 2)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    row = np.floor((yy + offset[0]) / pitch).astype(int)
    col = np.floor((xx + offset[1]) / pitch).astype(int)
    stage = rng.uniform(-0.25, 0.2, (row.max() + 1, col.max() + 1))
    if rng.random() < 0.6:
        dy = (yy + offset[0]) - (row + 0.5) * pitch
        dx = (xx + offset[1]) - (col + 0.5) * pitch
        field = dy**2 + dx**2 < (0.46 * pitch) ** 2
    else:
        track = 0.06 * pitch
        field = ((yy + offset[0]) % pitch > track) & ((xx + offset[1]) % pitch > track)
    return np.where(field, stage[row, col], 0.35).astype(np.float32), None


def _villas(rng: np.random.Generator, size: int, scale: float):
    # Plots along wide streets; a built plot holds one large roof with a yard around it.
    block = max(int(rng.integers(14, 23) * scale), 6)
    street = max(int(round(2 * scale)), 1)
    margin = max(block // 10, 1)
    yy, xx = np.mgrid[0:size, 0:size]
    in_y, in_x = yy % block, xx % block
    streets = (in_y < street) | (in_x < street)
    blocks = (size // block + 1, size // block + 1)
    roofs = rng.uniform(-0.12, 0.12, blocks)[yy // block, xx // block]
    built = rng.random(blocks) < 0.75
    inner = (in_y >= street + margin) & (in_x >= street + margin)
    inner &= (in_y < block - margin) & (in_x < block - margin)
    on_roof = built[yy // block, xx // block] & inner
    texture = np.full((size, size), -0.12, dtype=np.float32)  # yards: sand, darker than roofs
    texture[on_roof] = roofs[on_roof]
    texture[streets] = -0.45
    detail = np.full((size, size), OEM_DEVELOPED, dtype=np.uint8)
    detail[on_roof] = OEM_BUILDING
    detail[streets] = OEM_ROAD
    return texture, detail


def _dunes(rng: np.random.Generator, size: int, scale: float):
    # Long crests across the wind, meandering, with fine ripples of sand.
    angle = rng.uniform(0, np.pi)
    period = rng.uniform(10, 18) * scale
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    along = (
        xx * np.cos(angle) + yy * np.sin(angle) + 0.3 * period * smooth_noise(rng, size, 3 * period)
    )
    texture = 0.1 * np.sin(along * 2 * np.pi / period) + 0.05 * smooth_noise(rng, size, 2 * scale)
    return texture.astype(np.float32), None


TEXTURES: dict[str, Texture] = {
    "canopy": _canopy,
    "grass": _grass,
    "stripes": _stripes,
    "roofs": _roofs,
    "street": _street,
    "calm": _calm,
    "soil": _soil,
    "steppe": _steppe,
    "pivots": _pivots,
    "villas": _villas,
    "dunes": _dunes,
}


class Tile(NamedTuple):
    """One synthetic tile; every map is (size, size) uint8 over the same pixels."""

    image: np.ndarray  # (size, size, 3) uint8 RGB
    mask: np.ndarray  # target class ids (SURFACE_TO_TARGET), IGNORE_INDEX in no-data strips
    oem: np.ndarray  # OpenEarthMap ids as the style labels them, 0 (void) in no-data strips
    surface: np.ndarray  # surface ids (SURFACES), also under no-data strips


def paint_regions(
    rng: np.random.Generator, regions: np.ndarray, looks: list[Surface], style: DomainStyle
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw each region of ``regions`` ((size, size) ids, square) as its surface ``looks[id]``,
    with sand shores around water and sensor noise: the image ((size, size, 3) uint8 RGB), the
    OpenEarthMap ids and the surface ids of its pixels."""
    size = regions.shape[0]
    surface = np.zeros((size, size), dtype=np.uint8)
    oem = np.zeros((size, size), dtype=np.uint8)
    image = np.zeros((size, size, 3), dtype=np.float32)
    for region, look in enumerate(looks):
        inside = regions == region
        color = np.asarray(look.mean, dtype=np.float32) + rng.normal(0, look.spread, 3)
        texture, detail = TEXTURES[look.texture](rng, size, style.scale)
        image[inside] = color * (1.0 + texture[inside, None])
        oem[inside] = detail[inside] if detail is not None else look.labels[0][0]
        surface[inside] = look.kind

    # Shores: a band of sand around water bodies, bare land in both label sets.
    water = (surface == WATER).astype(np.uint8)
    if water.any():
        width = max(int(round(2 * style.scale)), 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
        shore = (cv2.dilate(water, kernel) > 0) & (water == 0)
        shore_color = np.asarray(style.shore_color, dtype=np.float32)
        image[shore] = shore_color + rng.normal(0, 8, (int(shore.sum()), 3))
        surface[shore], oem[shore] = SHORE, OEM_BARELAND

    image = image * np.asarray(style.color_gain, dtype=np.float32) + style.brightness
    image += rng.normal(0, style.noise, image.shape)
    return image.clip(0, 255).astype(np.uint8), oem, surface


def synthesize_tile(
    rng: np.random.Generator, size: int = 64, style: DomainStyle = TARGET_STYLE
) -> Tile:
    """One synthetic tile in ``style``: its image, target mask, OpenEarthMap labels and surfaces."""
    num_regions = max(int(rng.integers(3, 10) / style.scale), 2)
    regions = _region_map(rng, size, num_regions)
    region_surfaces = rng.choice(len(style.surfaces), size=num_regions, p=style.frequencies)
    looks = [style.surfaces[int(index)] for index in region_surfaces]
    image, oem, surface = paint_regions(rng, regions, looks, style)
    mask = SURFACE_TO_TARGET[surface]
    if rng.random() < 0.2:  # a no-data strip along one edge
        width = int(rng.integers(2, max(size // 8, 3)))
        image[:, :width] = 0
        mask[:, :width] = IGNORE_INDEX
        oem[:, :width] = OEM_VOID
    return Tile(image, mask, oem, surface)


UNLABELLED_STREAM = 1000  # random stream of the unlabelled tiles, apart from the splits
# The demo's target splits; a Test tile's index fixes it (the first 16 are those of a Test of 16).
DEMO_SPLIT_SIZES = {"Train": 48, "Val": 16, "Test": 128}


def write_target_dataset(
    output_root: str | Path,
    split_sizes: dict[str, int] | None = None,
    *,
    tile_size: int = 64,
    seed: int = 0,
    unlabelled: int = 0,
) -> Path:
    """Write the target layout: ``<output_root>/<split>/images_png|masks_png/<stem>.png``, and
    ``unlabelled`` more target-domain tiles without masks in ``Unlabelled/images_png`` (their own
    random stream: the labelled splits are the same with or without them)."""
    output_root = Path(output_root)
    split_sizes = split_sizes or DEMO_SPLIT_SIZES
    for split_index, (split, count) in enumerate(split_sizes.items()):
        rng = np.random.default_rng([seed, split_index])
        (output_root / split / "images_png").mkdir(parents=True, exist_ok=True)
        (output_root / split / "masks_png").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            tile = synthesize_tile(rng, tile_size, TARGET_STYLE)
            stem = f"{split.lower()}_{index:04d}"
            write_png_atomic(output_root / split / "images_png" / f"{stem}.png", tile.image)
            write_png_atomic(output_root / split / "masks_png" / f"{stem}.png", tile.mask)
    rng = np.random.default_rng([seed, UNLABELLED_STREAM])
    for index in range(unlabelled):
        tile = synthesize_tile(rng, tile_size, TARGET_STYLE)  # the mask is withheld
        write_png_atomic(
            output_root / "Unlabelled" / "images_png" / f"unlabelled_{index:04d}.png", tile.image
        )
    return output_root


def write_openearthmap_release(
    output_root: str | Path,
    *,
    regions: tuple[str, ...] = ("synthcity", "synthvale", "synthbay"),
    tiles_per_region: int = 24,
    tile_size: int = 96,
    split_fractions: tuple[float, float] = (0.7, 0.2),
    num_missing_images: int = 2,
    seed: int = 0,
    domain_gap: str = "strong",
) -> Path:
    """Write the OpenEarthMap release layout in the style ``OEM_STYLES[domain_gap]``.

    ``<output_root>/<region>/images/<region>_<n>.tif`` (RGB), ``labels/<same>.tif`` (ids 0..8) and
    ``train.txt``/``val.txt``/``test.txt`` listing file names (``split_fractions``: train, val;
    the rest test). ``num_missing_images`` listed training images are left out, labels kept, as the
    public release does for its xBD regions. ``mild`` writes the files it always has (no
    georeference); ``strong`` writes GeoTIFFs in ``OEM_CRS`` whose pixel size is the style's
    ground sampling distance, each region's tiles side by side along a row.
    """
    if domain_gap not in OEM_STYLES:
        raise ValueError(f"domain_gap must be one of {', '.join(DOMAIN_GAPS)}; got {domain_gap!r}")
    style = OEM_STYLES[domain_gap]
    output_root = Path(output_root)
    names = []
    for region_index, region in enumerate(regions):
        rng = np.random.default_rng([seed, 100 + region_index])
        (output_root / region / "images").mkdir(parents=True, exist_ok=True)
        (output_root / region / "labels").mkdir(parents=True, exist_ok=True)
        for index in range(1, tiles_per_region + 1):
            tile = synthesize_tile(rng, tile_size, style)
            name = f"{region}_{index}.tif"
            if domain_gap == "mild":
                _write_tif(output_root / region / "images" / name, tile.image)
                _write_tif(output_root / region / "labels" / name, tile.oem)
            else:
                west = 400_000 + (index - 1) * tile_size * style.gsd_m
                north = 4_000_000 + 10_000 * region_index
                transform = Affine(style.gsd_m, 0.0, west, 0.0, -style.gsd_m, north)
                write_geotiff(output_root / region / "images" / name, tile.image, transform)
                write_geotiff(output_root / region / "labels" / name, tile.oem, transform)
            names.append(name)
    order = np.random.default_rng([seed, 1]).permutation(len(names))
    shuffled = [names[i] for i in order]
    n_train = int(round(split_fractions[0] * len(names)))
    n_val = int(round(split_fractions[1] * len(names)))
    splits = {
        "train": shuffled[:n_train],
        "val": shuffled[n_train : n_train + n_val],
        "test": shuffled[n_train + n_val :],
    }
    for split, split_names in splits.items():
        (output_root / f"{split}.txt").write_text("".join(f"{name}\n" for name in split_names))
    for name in splits["train"][:num_missing_images]:
        region = name.rsplit("_", 1)[0]
        (output_root / region / "images" / name).unlink()
    return output_root


def _write_tif(path: Path, array: np.ndarray) -> None:
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    if not cv2.imwrite(str(path), bgr):
        raise OSError(f"{path}: could not write the TIFF")


def write_geotiff(path: Path, array: np.ndarray, transform: Affine, crs: str = OEM_CRS) -> None:
    """``array`` ((H, W, 3) RGB or (H, W) ids, uint8) as a georeferenced GeoTIFF in ``crs``,
    without a nodata value: no-data strips are void in the labels."""
    bands = array.transpose(2, 0, 1) if array.ndim == 3 else array[None]
    profile = {
        "driver": "GTiff",
        "width": array.shape[1],
        "height": array.shape[0],
        "count": bands.shape[0],
        "dtype": "uint8",
        "crs": crs,
        "transform": transform,
        "compress": "deflate",
    }
    if bands.shape[0] == 3:
        profile.update(photometric="RGB", interleave="pixel")
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(bands)


def main() -> None:
    parser = ArgumentParser(description="Write the synthetic land-cover datasets.")
    parser.add_argument("--output-root", default="data/demo", help="parent folder of both datasets")
    parser.add_argument("--train", type=int, default=DEMO_SPLIT_SIZES["Train"])
    parser.add_argument("--val", type=int, default=DEMO_SPLIT_SIZES["Val"])
    parser.add_argument(
        "--test",
        type=int,
        default=DEMO_SPLIT_SIZES["Test"],
        help="target Test tiles (the first n are the same for any larger n)",
    )
    parser.add_argument(
        "--unlabelled", type=int, default=96, help="target tiles without masks (Unlabelled split)"
    )
    parser.add_argument("--tile-size", type=int, default=64, help="target tile side in pixels")
    parser.add_argument("--oem-tiles-per-region", type=int, default=48)
    parser.add_argument("--oem-tile-size", type=int, default=96)
    parser.add_argument(
        "--domain-gap",
        choices=DOMAIN_GAPS,
        default="strong",
        help="how the OpenEarthMap-style domain differs from the target: mild (colour balance, "
        "brightness, pixel size; labels one to one) or strong (own colours, textures, class mix, "
        "pixel size and label meanings)",
    )
    parser.add_argument(
        "--map-scenes",
        type=at_least(0),
        default=0,
        help="georeferenced target scenes drawn from shapes, their truth and an OpenStreetMap file "
        "of the shapes with a mapper's errors, in <output-root>/map_scenes (0: none)",
    )
    parser.add_argument(
        "--map-scene-size", type=at_least(16), default=512, help="map scene side in pixels (1 m)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = {"Train": args.train, "Val": args.val, "Test": args.test}
    root = Path(args.output_root)
    target = write_target_dataset(
        root / "biodiversity",
        sizes,
        tile_size=args.tile_size,
        seed=args.seed,
        unlabelled=args.unlabelled,
    )
    oem = write_openearthmap_release(
        root / "OpenEarthMap",
        tiles_per_region=args.oem_tiles_per_region,
        tile_size=args.oem_tile_size,
        seed=args.seed,
        domain_gap=args.domain_gap,
    )
    gsd = OEM_STYLES[args.domain_gap].gsd_m
    print(f"wrote the target layout to {target} ({sizes}, {args.unlabelled} unlabelled tiles)")
    print(
        f"wrote the OpenEarthMap release layout to {oem} ({args.domain_gap} domain gap, "
        f"{gsd:g} m pixels against the target's {TARGET_GSD_M:g} m)"
    )
    if args.map_scenes:
        # Imported here: synthetic_maps draws with this module's surfaces (an import cycle at the
        # top).
        from geoseg.datasets.synthetic_maps import MAP_CRS, write_map_scenes

        maps = root / "map_scenes"
        counts = write_map_scenes(
            maps, scenes=args.map_scenes, size=args.map_scene_size, seed=args.seed
        )
        mapped = ", ".join(f"{m} of {n} {kind}" for kind, (n, m) in counts.items())
        print(
            f"wrote {args.map_scenes} map scenes ({args.map_scene_size} px, {MAP_CRS}) and their "
            f"truth to {maps}, and {maps / 'map.osm'} mapping {mapped}"
        )


if __name__ == "__main__":
    main()
