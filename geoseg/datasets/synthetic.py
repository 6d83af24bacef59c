"""Synthetic land-cover tiles in the real layouts, so the pipeline and its tests run anywhere.

Each tile is a mosaic of irregular regions (a warped Voronoi partition of varied region sizes),
each region one class drawn with a class-specific colour and texture: forest is dark, blotchy
canopy; grassland smooth, light green; cropland striped parcels; settlement grey blocks of roofs and
roads; water smooth blue with a sandy shore (labelled other, like bare land); other bare brown.
Colours overlap between the vegetation classes, so a model must use texture and context. Some tiles
carry a no-data strip (black pixels, ignore in the mask) as real acquisitions do at swath edges.

Two domains: the "target" style and the "OpenEarthMap" style, which differs in colour balance,
brightness and ground sampling (finer pixels: larger objects), as the real datasets do. The
OpenEarthMap tiles are written in its release layout with its nine classes (settlement split into
developed space, road and building), GeoTIFF-style ``.tif`` files and split lists, and a few images
left out as in the public release (xBD regions).

``python -m geoseg.datasets.synthetic --output-root data/demo`` writes ``data/demo/biodiversity``
(target layout) and ``data/demo/OpenEarthMap`` (release layout).
"""

import argparse
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from geoseg.classes import CLASSES, IGNORE_INDEX, NUM_CLASSES
from geoseg.datasets.io import write_png_atomic

# The synthetic world is drawn for the default scheme's six classes; their ids come from it.
OTHER, FOREST, GRASSLAND, CROPLAND, SETTLEMENT, WATER = (
    CLASSES.index(name)
    for name in ("other", "forest", "grassland", "cropland", "settlement", "water")
)
# OpenEarthMap ids for the same surfaces (the inverse of classes.OEM_TO_TARGET, settlement split).
OEM_VOID, OEM_BARELAND, OEM_RANGELAND, OEM_DEVELOPED, OEM_ROAD = 0, 1, 2, 3, 4
OEM_TREE, OEM_WATER, OEM_AGRICULTURE, OEM_BUILDING = 5, 6, 7, 8
TARGET_TO_OEM = {
    OTHER: OEM_BARELAND,
    FOREST: OEM_TREE,
    GRASSLAND: OEM_RANGELAND,
    CROPLAND: OEM_AGRICULTURE,
    WATER: OEM_WATER,
}

# Mean RGB of each class and the spread of that mean between regions.
CLASS_COLORS = {
    OTHER: ((150, 120, 90), 20),
    FOREST: ((50, 85, 45), 15),
    GRASSLAND: ((95, 135, 70), 20),
    CROPLAND: ((130, 140, 80), 25),
    SETTLEMENT: ((150, 140, 135), 20),
    WATER: ((40, 70, 110), 15),
}
SHORE_COLOR = np.array((175, 160, 125), dtype=np.float32)
# How often each class is drawn for a region: forest-dominated, as in the target data.
CLASS_FREQUENCIES = np.array([0.08, 0.32, 0.2, 0.18, 0.14, 0.08])


@dataclass(frozen=True)
class DomainStyle:
    """How a sensor/dataset renders the same land cover."""

    color_gain: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-band colour balance
    brightness: float = 0.0  # added to every band
    scale: float = 1.0  # ground sampling: >1 means finer pixels, so objects look larger
    noise: float = 6.0  # sensor noise, standard deviation in grey levels
    class_frequencies: tuple[float, ...] = tuple(CLASS_FREQUENCIES)


TARGET_STYLE = DomainStyle()
# Warmer, brighter, finer (0.25-0.5 m against the target's coarser pixels), more built-up.
OEM_STYLE = DomainStyle(
    color_gain=(1.12, 1.0, 0.86),
    brightness=10.0,
    scale=1.5,
    noise=4.0,
    class_frequencies=(0.1, 0.22, 0.2, 0.16, 0.24, 0.08),
)


def _smooth_noise(rng: np.random.Generator, size: int, cell: float) -> np.ndarray:
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
    yy += 0.08 * size * _smooth_noise(rng, size, max(size / 4, 2))
    xx += 0.08 * size * _smooth_noise(rng, size, max(size / 4, 2))
    distances = (yy[None] - seeds[:, 0, None, None]) ** 2 + (
        xx[None] - seeds[:, 1, None, None]
    ) ** 2
    return (distances - weights[:, None, None]).argmin(axis=0)


def _texture(rng: np.random.Generator, label: int, size: int, scale: float):
    """Brightness modulation of one class over the tile, (size, size) float32 around 0, and for
    settlement the OpenEarthMap sub-class of each pixel (road, building or developed space)."""
    if label == FOREST:
        texture = 0.35 * _smooth_noise(rng, size, 3 * scale) + 0.15 * _smooth_noise(
            rng, size, 8 * scale
        )
        return texture, None
    if label == GRASSLAND:
        return 0.12 * _smooth_noise(rng, size, 12 * scale), None
    if label == CROPLAND:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 8) * scale
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
        return (0.2 * np.sin(phase)).astype(np.float32), None
    if label == SETTLEMENT:
        block = max(int(rng.integers(6, 11) * scale), 4)
        street = max(int(round(2 * scale)), 1)
        yy, xx = np.mgrid[0:size, 0:size]
        streets = (yy % block < street) | (xx % block < street)
        blocks = (size // block + 1, size // block + 1)
        roofs = rng.uniform(-0.3, 0.3, blocks)
        built = rng.random(blocks) < 0.7  # the other blocks are yards and car parks
        texture = roofs[yy // block, xx // block].astype(np.float32)
        texture[streets] = -0.35
        detail = np.where(built[yy // block, xx // block], OEM_BUILDING, OEM_DEVELOPED)
        detail[streets] = OEM_ROAD
        return texture, detail.astype(np.uint8)
    if label == WATER:
        return 0.04 * _smooth_noise(rng, size, 16 * scale), None
    return 0.15 * _smooth_noise(rng, size, 6 * scale), None


def synthesize_tile(
    rng: np.random.Generator, size: int = 64, style: DomainStyle = TARGET_STYLE
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic tile: (size, size, 3) uint8 RGB image, (size, size) uint8 target class ids,
    and (size, size) uint8 OpenEarthMap ids of the same pixels (0 void where the target ignores)."""
    num_regions = max(int(rng.integers(3, 10) / style.scale), 2)
    regions = _region_map(rng, size, num_regions)
    region_labels = rng.choice(NUM_CLASSES, size=num_regions, p=style.class_frequencies)
    mask = region_labels[regions].astype(np.uint8)
    oem = np.zeros((size, size), dtype=np.uint8)
    image = np.zeros((size, size, 3), dtype=np.float32)
    for region, label in enumerate(region_labels):
        inside = regions == region
        mean, spread = CLASS_COLORS[int(label)]
        color = np.asarray(mean, dtype=np.float32) + rng.normal(0, spread, 3)
        texture, detail = _texture(rng, int(label), size, style.scale)
        image[inside] = color * (1.0 + texture[inside, None])
        oem[inside] = detail[inside] if detail is not None else TARGET_TO_OEM[int(label)]

    # Shores: a sandy band of bare land around water bodies.
    water = (mask == WATER).astype(np.uint8)
    if water.any():
        width = max(int(round(2 * style.scale)), 1)
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
        shore = (cv2.dilate(water, kernel) > 0) & (water == 0)
        image[shore] = SHORE_COLOR + rng.normal(0, 8, (int(shore.sum()), 3))
        mask[shore], oem[shore] = OTHER, OEM_BARELAND

    image = image * np.asarray(style.color_gain, dtype=np.float32) + style.brightness
    image += rng.normal(0, style.noise, image.shape)
    image = image.clip(0, 255).astype(np.uint8)
    if rng.random() < 0.2:  # a no-data strip along one edge
        width = int(rng.integers(2, max(size // 8, 3)))
        image[:, :width] = 0
        mask[:, :width] = IGNORE_INDEX
        oem[:, :width] = OEM_VOID
    return image, mask, oem


UNLABELLED_STREAM = 1000  # random stream of the unlabelled tiles, apart from the splits


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
    split_sizes = split_sizes or {"Train": 48, "Val": 16, "Test": 16}
    for split_index, (split, count) in enumerate(split_sizes.items()):
        rng = np.random.default_rng([seed, split_index])
        (output_root / split / "images_png").mkdir(parents=True, exist_ok=True)
        (output_root / split / "masks_png").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, mask, _ = synthesize_tile(rng, tile_size, TARGET_STYLE)
            stem = f"{split.lower()}_{index:04d}"
            write_png_atomic(output_root / split / "images_png" / f"{stem}.png", image)
            write_png_atomic(output_root / split / "masks_png" / f"{stem}.png", mask)
    rng = np.random.default_rng([seed, UNLABELLED_STREAM])
    for index in range(unlabelled):
        image, _, _ = synthesize_tile(rng, tile_size, TARGET_STYLE)  # the mask is withheld
        write_png_atomic(
            output_root / "Unlabelled" / "images_png" / f"unlabelled_{index:04d}.png", image
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
) -> Path:
    """Write the OpenEarthMap release layout in the OpenEarthMap style.

    ``<output_root>/<region>/images/<region>_<n>.tif`` (RGB), ``labels/<same>.tif`` (ids 0..8) and
    ``train.txt``/``val.txt``/``test.txt`` listing file names (``split_fractions``: train, val;
    the rest test). ``num_missing_images`` listed training images are left out, labels kept, as the
    public release does for its xBD regions.
    """
    output_root = Path(output_root)
    names = []
    for region_index, region in enumerate(regions):
        rng = np.random.default_rng([seed, 100 + region_index])
        (output_root / region / "images").mkdir(parents=True, exist_ok=True)
        (output_root / region / "labels").mkdir(parents=True, exist_ok=True)
        for index in range(1, tiles_per_region + 1):
            image, _, labels = synthesize_tile(rng, tile_size, OEM_STYLE)
            name = f"{region}_{index}.tif"
            _write_tif(output_root / region / "images" / name, image)
            _write_tif(output_root / region / "labels" / name, labels)
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


def main() -> None:
    parser = argparse.ArgumentParser(description="Write the synthetic land-cover datasets.")
    parser.add_argument("--output-root", default="data/demo", help="parent folder of both datasets")
    parser.add_argument("--train", type=int, default=48, help="target Train tiles")
    parser.add_argument("--val", type=int, default=16, help="target Val tiles")
    parser.add_argument("--test", type=int, default=16, help="target Test tiles")
    parser.add_argument(
        "--unlabelled", type=int, default=96, help="target tiles without masks (Unlabelled split)"
    )
    parser.add_argument("--tile-size", type=int, default=64, help="target tile side in pixels")
    parser.add_argument("--oem-tiles-per-region", type=int, default=48)
    parser.add_argument("--oem-tile-size", type=int, default=96)
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
    )
    print(f"wrote the target layout to {target} ({sizes}, {args.unlabelled} unlabelled tiles)")
    print(f"wrote the OpenEarthMap release layout to {oem}")


if __name__ == "__main__":
    main()
