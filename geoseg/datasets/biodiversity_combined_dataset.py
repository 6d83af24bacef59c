"""The combined layout (target links + remapped OpenEarthMap tiles), read with the target dataset's code."""

import os

from geoseg.datasets.combine import OEM_PREFIX, TARGET_PREFIX
from geoseg.datasets.target_dataset import TargetDataset
from geoseg.errors import DataError

SOURCE_PREFIXES = {"target": TARGET_PREFIX, "oem": OEM_PREFIX}


class BiodiversityCombinedDataset(TargetDataset):
    """Tiles of ``<data_root>/{Train,Val}/{images_png,masks_png}``: ``target_*`` (links to the target
    data) and ``oem_*`` (OpenEarthMap, remapped to the target classes).

    ``sources`` selects the tiles by origin ("target", "oem"); items, checks and errors are those
    of TargetDataset.
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
        super().__init__(data_root, split, **kwargs)

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
