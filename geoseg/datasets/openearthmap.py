"""Reading the OpenEarthMap release and remapping its labels to the target classes.

Release layout: ``<root>/<region>/images/<name>.tif`` (RGB, 8-bit GeoTIFF),
``<root>/<region>/labels/<name>.tif`` (one band, ids 0..8: void, bareland, rangeland, developed
space, road, tree, water, agriculture land, building) and ``<root>/{train,val,test}.txt``, one file
name per line (``aachen_1.tif``; the region is the name without its trailing ``_<n>``). The public
release lacks the images of some regions (xBD): such pairs are reported, not fatal.

The remap sends each OpenEarthMap id to a target class id, to the ignore id, or to a *label set*:
two or more target classes, for a source class that is "one of these" (rangeland -> forest or
grassland). Each distinct set gets its own mask id ``num_classes + k`` (k = 0, 1, ... in the order
of first appearance in the remap), below the ignore id; ``remap_label_sets`` names them.
Written on the command line: comma-separated entries, a set as ``a|b``: ``255,255,1|2,4,4,1,5,3,4``.
"""

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoseg.classes import IGNORE_INDEX, NUM_CLASSES, OEM_CLASSES, OEM_TO_TARGET
from geoseg.errors import DataError

# One remap entry: a target class id, the ignore id, or a label set (>= 2 target class ids).
RemapEntry = int | tuple[int, ...]

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


def parse_remap(text: str) -> tuple[RemapEntry, ...]:
    """``"255,0,1|2,4,4,1,5,3,4"`` -> ``(255, 0, (1, 2), 4, ...)``: comma-separated entries, a
    label set written with ``|``; checks the syntax only (``check_remap`` checks the ids)."""
    entries = []
    for position, item in enumerate(text.split(",")):
        try:
            ids = tuple(int(part) for part in item.split("|"))
        except ValueError:
            raise DataError(
                f"remap entry {position} {item.strip()!r} is not an id or a set of ids; expected "
                "integers, a set written a|b, entries separated by commas (e.g. 255,255,1|2,4,4,1,5,3,4)"
            ) from None
        entries.append(ids[0] if len(ids) == 1 else ids)
    return tuple(entries)


def check_remap(
    remap, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
) -> tuple[RemapEntry, ...]:
    """The remap with every entry checked: one per OpenEarthMap id 0..8, each a class id
    0..num_classes-1, ``ignore_index``, or a set of >= 2 distinct class ids (returned sorted, as a
    tuple); room for one mask id per distinct set below ``ignore_index``. Else a DataError naming
    the entry and what is allowed."""
    remap = list(remap)
    if len(remap) != len(OEM_CLASSES):
        raise DataError(
            f"the remap table needs {len(OEM_CLASSES)} entries (OpenEarthMap ids 0..8), got "
            f"{len(remap)}: {_remap_text(remap)}"
        )
    allowed = (
        f"allowed: a class id 0..{num_classes - 1}, {ignore_index} (ignore) or a set of >= 2 "
        "distinct class ids written a|b"
    )
    checked = []
    for position, entry in enumerate(remap):
        where = f"remap entry {position} ({OEM_CLASSES[position]}) = {_entry_text(entry)}"
        if isinstance(entry, (list, tuple, set, frozenset)):
            ids = list(entry)
            if not all(_is_int(value) for value in ids):
                raise DataError(f"{where}: not integer ids; {allowed}")
            outside = [v for v in ids if not 0 <= v < num_classes]
            if outside:
                raise DataError(
                    f"{where}: {outside[0]} is not a class id of the scheme; {allowed} "
                    "(ignore is not a member of a set)"
                )
            if len(set(ids)) != len(ids):
                raise DataError(f"{where}: repeats an id; {allowed}")
            if len(ids) < 2:
                raise DataError(f"{where}: a set needs >= 2 ids; {allowed}")
            checked.append(tuple(sorted(int(v) for v in ids)))
        elif _is_int(entry) and (0 <= entry < num_classes or entry == ignore_index):
            checked.append(int(entry))
        else:
            raise DataError(f"{where}: {entry!r} is outside the scheme; {allowed}")
    sets = list(dict.fromkeys(entry for entry in checked if isinstance(entry, tuple)))
    if sets and num_classes + len(sets) > ignore_index:
        raise DataError(
            f"the remap {_remap_text(checked)} has {len(sets)} label sets, which need the mask ids "
            f"{num_classes}..{num_classes + len(sets) - 1}; they must stay below the ignore id "
            f"{ignore_index}"
        )
    return tuple(checked)


def remap_label_sets(
    remap, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX
) -> dict[int, tuple[int, ...]]:
    """Mask id -> class ids of every distinct label set of ``remap``: ``num_classes + k`` for the
    k-th set in the order of first appearance (``{}`` for a remap without sets)."""
    remap = check_remap(remap, num_classes, ignore_index)
    sets = dict.fromkeys(entry for entry in remap if isinstance(entry, tuple))
    return {num_classes + k: members for k, members in enumerate(sets)}


def remap_lookup_table(
    table=OEM_TO_TARGET,
    ignore_index: int = IGNORE_INDEX,
    *,
    num_classes: int = NUM_CLASSES,
    sets_as_ignore: bool = False,
) -> np.ndarray:
    """A (256,) uint8 lookup table: OpenEarthMap id -> mask id (a class, a label set's id, or
    ignore); ids beyond the table -> ignore. With ``sets_as_ignore`` label sets -> ignore (masks
    that are scored, where "one of these" cannot count as one class). ``table`` is checked with
    ``check_remap``."""
    table = check_remap(table, num_classes, ignore_index)
    set_ids = {
        members: mask_id
        for mask_id, members in remap_label_sets(table, num_classes, ignore_index).items()
    }
    lut = np.full(256, ignore_index, dtype=np.uint8)
    for source, entry in enumerate(table):
        if isinstance(entry, tuple):
            lut[source] = ignore_index if sets_as_ignore else set_ids[entry]
        else:
            lut[source] = entry
    return lut


def remap_as_plain(remap) -> list:
    """The remap as plain JSON-able values: sets as lists (``[255, 0, [1, 2], ...]``)."""
    return [list(entry) if isinstance(entry, (list, tuple)) else entry for entry in remap]


def _is_int(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _entry_text(entry) -> str:
    if isinstance(entry, (list, tuple, set, frozenset)):
        return "|".join(str(value) for value in entry)
    return str(entry)


def _remap_text(remap) -> str:
    return ",".join(_entry_text(entry) for entry in remap)
