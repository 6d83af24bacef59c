"""Synthetic land-cover tiles in the target layout, so the pipeline and its tests run anywhere.

Each tile is a mosaic of irregular regions (a jittered Voronoi partition), each region one class,
drawn with a class-specific colour and texture: forest is dark, blotchy green; grassland smoother,
lighter green; cropland striped fields; settlement a grid of roofs and streets; water smooth blue;
other bare brown. Colours overlap between the vegetation classes, so a model must use texture and
context, not colour alone. Some tiles carry a no-data strip (black pixels, ignore in the mask),
as real acquisitions do at swath edges.

Run ``python -m geoseg.datasets.synthetic --output-root data/demo/biodiversity`` to write a dataset.
"""

import argparse
from pathlib import Path

import cv2
import numpy as np

from geoseg.datasets.classes import IGNORE_INDEX, NUM_CLASSES
from geoseg.datasets.io import write_png_atomic

OTHER, FOREST, GRASSLAND, CROPLAND, SETTLEMENT, WATER = range(6)

# Mean RGB of each class and the spread of that mean between regions.
CLASS_COLORS = {
    OTHER: ((150, 120, 90), 20),
    FOREST: ((50, 85, 45), 15),
    GRASSLAND: ((95, 135, 70), 20),
    CROPLAND: ((130, 140, 80), 25),
    SETTLEMENT: ((150, 140, 135), 20),
    WATER: ((40, 70, 110), 15),
}
# How often each class is drawn for a region: forest-dominated, as in the target data.
CLASS_FREQUENCIES = np.array([0.08, 0.32, 0.2, 0.18, 0.14, 0.08])


def _smooth_noise(rng: np.random.Generator, size: int, cell: int) -> np.ndarray:
    """Value noise in [-1, 1] with features about ``cell`` pixels wide: (size, size) float32."""
    coarse = rng.uniform(-1, 1, (size // cell + 2, size // cell + 2)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC).clip(-1, 1)


def _region_map(rng: np.random.Generator, size: int, num_regions: int) -> np.ndarray:
    """An irregular partition of the tile: (size, size) int region ids."""
    seeds = rng.uniform(0, size, (num_regions, 2))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    # Warp the coordinates so the region borders meander instead of being straight.
    yy += 0.08 * size * _smooth_noise(rng, size, max(size // 4, 2))
    xx += 0.08 * size * _smooth_noise(rng, size, max(size // 4, 2))
    distances = (yy[None] - seeds[:, 0, None, None]) ** 2 + (
        xx[None] - seeds[:, 1, None, None]
    ) ** 2
    return distances.argmin(axis=0)


def _texture(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """Brightness modulation for one class over the whole tile: (size, size) float32 around 0."""
    if label == FOREST:
        return 0.35 * _smooth_noise(rng, size, 3) + 0.15 * _smooth_noise(rng, size, 8)
    if label == GRASSLAND:
        return 0.12 * _smooth_noise(rng, size, 12)
    if label == CROPLAND:
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, 8)
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
        return (0.2 * np.sin(phase)).astype(np.float32)
    if label == SETTLEMENT:
        block = int(rng.integers(6, 11))
        yy, xx = np.mgrid[0:size, 0:size]
        streets = (yy % block < 2) | (xx % block < 2)
        roofs = rng.uniform(-0.3, 0.3, (size // block + 1, size // block + 1))
        texture = roofs[yy // block, xx // block].astype(np.float32)
        texture[streets] = -0.35
        return texture
    if label == WATER:
        return 0.04 * _smooth_noise(rng, size, 16)
    return 0.15 * _smooth_noise(rng, size, 6)


def synthesize_tile(
    rng: np.random.Generator, size: int = 64, num_regions: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic tile: (size, size, 3) uint8 RGB image and (size, size) uint8 class-id mask."""
    num_regions = num_regions or int(rng.integers(3, 8))
    regions = _region_map(rng, size, num_regions)
    region_labels = rng.choice(NUM_CLASSES, size=num_regions, p=CLASS_FREQUENCIES)
    mask = region_labels[regions].astype(np.uint8)
    image = np.zeros((size, size, 3), dtype=np.float32)
    for region, label in enumerate(region_labels):
        inside = regions == region
        mean, spread = CLASS_COLORS[int(label)]
        color = np.asarray(mean, dtype=np.float32) + rng.normal(0, spread, 3)
        texture = _texture(rng, int(label), size)
        image[inside] = color * (1.0 + texture[inside, None])
    image += rng.normal(0, 6, image.shape)  # sensor noise
    image = image.clip(0, 255).astype(np.uint8)
    if rng.random() < 0.2:  # a no-data strip along one edge
        width = int(rng.integers(2, max(size // 8, 3)))
        image[:, :width] = 0
        mask[:, :width] = IGNORE_INDEX
    return image, mask


def write_target_dataset(
    output_root: str | Path,
    split_sizes: dict[str, int] | None = None,
    *,
    tile_size: int = 64,
    seed: int = 0,
) -> Path:
    """Write ``<output_root>/<split>/images_png|masks_png/<stem>.png`` for each split."""
    output_root = Path(output_root)
    split_sizes = split_sizes or {"Train": 48, "Val": 16, "Test": 16}
    for split_index, (split, count) in enumerate(split_sizes.items()):
        rng = np.random.default_rng([seed, split_index])
        (output_root / split / "images_png").mkdir(parents=True, exist_ok=True)
        (output_root / split / "masks_png").mkdir(parents=True, exist_ok=True)
        for index in range(count):
            image, mask = synthesize_tile(rng, tile_size)
            stem = f"{split.lower()}_{index:04d}"
            write_png_atomic(output_root / split / "images_png" / f"{stem}.png", image)
            write_png_atomic(output_root / split / "masks_png" / f"{stem}.png", mask)
    return output_root


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output-root", default="data/demo/biodiversity")
    parser.add_argument("--train", type=int, default=48, help="number of Train tiles")
    parser.add_argument("--val", type=int, default=16, help="number of Val tiles")
    parser.add_argument("--test", type=int, default=16, help="number of Test tiles")
    parser.add_argument("--tile-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    sizes = {"Train": args.train, "Val": args.val, "Test": args.test}
    root = write_target_dataset(args.output_root, sizes, tile_size=args.tile_size, seed=args.seed)
    print(f"wrote {sum(sizes.values())} synthetic tiles to {root} ({sizes})")


if __name__ == "__main__":
    main()
