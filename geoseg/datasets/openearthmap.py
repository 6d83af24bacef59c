"""Reading the OpenEarthMap release and remapping its labels to the target classes.

Release layout: ``<root>/<region>/images/<name>.tif`` (RGB, 8-bit GeoTIFF),
``<root>/<region>/labels/<name>.tif`` (one band, ids 0..8: void, bareland, rangeland, developed
space, road, tree, water, agriculture land, building) and ``<root>/{train,val,test}.txt``, one file
name per line (``aachen_1.tif``; the region is the name without its trailing ``_<n>``). The public
release lacks the images of some regions (xBD): such pairs are reported, not fatal.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoseg.classes import IGNORE_INDEX, OEM_CLASSES, OEM_TO_TARGET
from geoseg.errors import DataError

RELEASE_LAYOUT = (
    "<root>/<region>/images/<name>.tif, <root>/<region>/labels/<name>.tif, <root>/{train,val}.txt"
)


@dataclass(frozen=True)
class OEMPair:
    """One listed tile of the release; ``name`` without extension is its stem."""

    name: str
    image: Path
    label: Path

    @property
    def stem(self) -> str:
        return Path(self.name).stem


def read_split_list(root: str | os.PathLike, split: str) -> list[str]:
    """The file names listed in ``<root>/<split>.txt`` (blank lines and duplicates dropped)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(
            f"{root}: OpenEarthMap folder not found. Expected the release layout {RELEASE_LAYOUT}."
        )
    path = root / f"{split}.txt"
    if not path.is_file():
        raise DataError(
            f"{path}: split list not found. Expected the release layout {RELEASE_LAYOUT}."
        )
    names = list(
        dict.fromkeys(line.strip() for line in path.read_text().splitlines() if line.strip())
    )
    if not names:
        raise DataError(f"{path}: the split list is empty")
    return names


def locate_pairs(
    root: str | os.PathLike, names: list[str]
) -> tuple[list[OEMPair], list[str], list[str]]:
    """Find each listed tile on disk: (pairs found, names without image, names without label)."""
    root = Path(root)
    pairs, missing_image, missing_label = [], [], []
    for name in names:
        region = Path(name).stem.rsplit("_", 1)[0]
        image = root / region / "images" / name
        label = root / region / "labels" / name
        if not image.is_file():
            missing_image.append(name)
        elif not label.is_file():
            missing_label.append(name)
        else:
            pairs.append(OEMPair(name, image, label))
    return pairs, missing_image, missing_label


def remap_lookup_table(
    table: tuple[int, ...] = OEM_TO_TARGET, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """A (256,) uint8 lookup table: OpenEarthMap id -> target id; ids beyond the table -> ignore."""
    if len(table) != len(OEM_CLASSES):
        raise DataError(
            f"the remap table needs {len(OEM_CLASSES)} entries (OpenEarthMap ids 0..8), got {len(table)}: {list(table)}"
        )
    if not all(0 <= value <= 255 for value in table):
        raise DataError(f"remap table values must be 0..255, got {list(table)}")
    lut = np.full(256, ignore_index, dtype=np.uint8)
    lut[: len(table)] = table
    return lut
