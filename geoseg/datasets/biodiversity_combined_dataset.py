"""The combined layout (target links + remapped OpenEarthMap tiles), read with the target dataset's code."""

import json
import os
from pathlib import Path

from geoseg.datasets.combine import MANIFEST_NAME, OEM_PREFIX, TARGET_PREFIX
from geoseg.datasets.target_dataset import TargetDataset
from geoseg.errors import DataError

SOURCE_PREFIXES = {"target": TARGET_PREFIX, "oem": OEM_PREFIX}


class BiodiversityCombinedDataset(TargetDataset):
    """Tiles of ``<data_root>/{Train,Val}/{images_png,masks_png}``: ``target_*`` (links to the target
    data) and ``oem_*`` (OpenEarthMap, remapped to the target classes).

    ``sources`` selects the tiles by origin ("target", "oem"); items, checks and errors are those
    of TargetDataset.

    The build's manifest (``<data_root>/combined_manifest.json``) gives ``remap`` (per OpenEarthMap
    id: a class id, the ignore id or a list of class ids; None without a manifest) and
    ``label_sets`` (mask id -> class ids, ``{}`` for a build without sets). Masks may hold those
    ids: Train pixels that are "one of these classes", for ``CEDiceLoss(label_sets=...)``; Val
    masks hold them as ignore.
    """

    def __init__(
        self,
        data_root: str | os.PathLike = "data/biodiversity_combined",
        split: str = "Train",
        *,
        sources: tuple[str, ...] = ("target", "oem"),
        **kwargs,
    ):
        unknown = set(sources) - set(SOURCE_PREFIXES)
        if unknown:
            raise DataError(
                f"unknown sources {sorted(unknown)}; expected some of {list(SOURCE_PREFIXES)}"
            )
        self.sources = tuple(sources)
        self.remap, self.label_sets = read_remap_record(data_root)
        super().__init__(data_root, split, label_set_ids=tuple(self.label_sets), **kwargs)

    def select_tiles(self, img_ids: list[str]) -> list[str]:
        """The tiles of the chosen sources."""
        prefixes = tuple(SOURCE_PREFIXES[source] for source in self.sources)
        selected = [img_id for img_id in img_ids if img_id.startswith(prefixes)]
        if not selected:
            raise DataError(
                f"{self.image_dir}: no tiles from {list(self.sources)} (names starting with "
                f"{list(prefixes)}); was it written by the combined-dataset build?"
            )
        return selected

    def training_data_record(self) -> dict | None:
        """What a checkpoint trained on this set records of it (plain values): the remap, the
        label sets (keys as strings, as in the manifest) and the root; None without a manifest."""
        if self.remap is None:
            return None
        return {
            "root": str(self.data_root),
            "remap": self.remap,
            "label_sets": {str(k): list(v) for k, v in self.label_sets.items()},
        }


def read_remap_record(
    data_root: str | os.PathLike,
) -> tuple[list | None, dict[int, tuple[int, ...]]]:
    """(remap, label_sets) of the combined build at ``data_root``, from its manifest: the remap
    as plain values (sets as lists; None without a manifest) and mask id -> class ids (``{}``
    without sets, or for a build from before label sets)."""
    path = Path(data_root) / MANIFEST_NAME
    if not path.is_file():
        return None, {}
    try:
        manifest = json.loads(path.read_text())
        remap = manifest.get("remap", manifest.get("settings", {}).get("remap"))
        label_sets = {
            int(k): tuple(int(c) for c in v) for k, v in manifest.get("label_sets", {}).items()
        }
    except (OSError, ValueError, TypeError, AttributeError) as error:
        raise DataError(
            f"{path}: unreadable manifest of the combined build ({error}); expected JSON with "
            '"remap" and "label_sets": {"<id>": [class ids]}; rebuild with create_combined_dataset.py'
        ) from None
    return remap, label_sets


def combined_label_sets(data_root: str | os.PathLike) -> dict[int, tuple[int, ...]]:
    """Mask id -> class ids of the combined build at ``data_root`` (``{}`` without sets): for
    ``CEDiceLoss(label_sets=...)`` in a config."""
    return read_remap_record(data_root)[1]
