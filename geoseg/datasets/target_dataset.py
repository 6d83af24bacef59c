"""The target dataset: image tiles (RGB, or the bands of a ``RasterInput``) with single-channel
class-id masks, one folder pair per split."""

import logging
import os
from collections.abc import Iterable
from pathlib import Path

import albumentations as A
import numpy as np
import torch
from torch.utils.data import Dataset

from geoseg.bands import RasterInput
from geoseg.classes import IGNORE_INDEX, NUM_CLASSES
from geoseg.datasets.io import computable, is_raster, list_files, read_image_and_valid, read_mask
from geoseg.datasets.rare_class_crop import ClassPixelIndex, RareClassCrop, draw_weights
from geoseg.datasets.transforms import TrainTransform, augment, image_to_tensor
from geoseg.errors import ConfigError, DataError, preview

log = logging.getLogger(__name__)

TARGET_LAYOUT = (
    "<root>/{Train,Val,Test}/images_png/<stem>.png (RGB, uint8) and "
    "<root>/{Train,Val,Test}/masks_png/<stem>.png (one channel, uint8 class ids; pairs match by stem)"
)


class TargetDataset(Dataset):
    """Tiles of the target layout, yielding GeoSeg's item keys.

    Layout on disk: ``<data_root>/<split>/images_png/<stem>.png`` (RGB, 8-bit; grey is repeated to
    three bands, alpha dropped) and ``<data_root>/<split>/masks_png/<stem>.png`` (single channel,
    uint8). Mask values are class ids ``0..num_classes-1`` or ``ignore_index`` (no data), which the
    losses and metrics leave out; any other value is an error naming the file. ``label_set_ids``
    admits further ids: those of label sets ("one of these classes", see
    ``BiodiversityCombinedDataset``), which only a partial-label loss understands.

    Items: ``{"img": (3, H, W) float32 on the 0-255 scale, "gt_semantic_seg": (H, W) int64,
    "img_id": stem}``. The network normalises its input itself.

    ``raster`` (a ``RasterInput``, the network's): images are rasters of its band count and dtype
    (GeoTIFF or any format GDAL reads), items hold its bands as raw float32 values, and a file of
    another band count or dtype is an error naming it. The network scales them itself.

    A bad pair (unreadable, 16-bit, colour-coded mask, unknown ids, sizes that differ) is an error
    when it is read. With ``skip_invalid=True`` every pair is checked once here instead and the bad
    ones are left out, counted and logged (``skipped`` holds the reasons).

    ``rare_class_crop`` (a ``RareClassCrop``, with a ``train_transform``): with its probability,
    an item is the transform's crop around a pixel of a class drawn with its weights, from a tile
    containing that class, instead of the indexed tile's random crop (``img_id`` then names the
    tile used). The masks are indexed once here for it.
    """

    def __init__(
        self,
        data_root: str | os.PathLike,
        split: str = "Train",
        *,
        transform: A.BasicTransform | None = None,
        num_classes: int = NUM_CLASSES,
        ignore_index: int = IGNORE_INDEX,
        normalization: dict | None = None,
        img_dir: str = "images_png",
        mask_dir: str = "masks_png",
        skip_invalid: bool = False,
        rare_class_crop: RareClassCrop | None = None,
        raster: RasterInput | None = None,
        label_set_ids: Iterable[int] = (),
    ):
        self.data_root = Path(data_root)
        self.raster = RasterInput.of(raster)
        self.split = split
        self.transform = transform
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        if normalization is not None:
            log.warning(
                "TargetDataset(normalization=...) is ignored: items are on the 0-255 scale and the "
                "network normalises its input (its `normalization` argument)"
            )
        self.image_dir = self.data_root / split / img_dir
        self.mask_dir = self.data_root / split / mask_dir
        for folder in (self.image_dir, self.mask_dir):
            if not folder.is_dir():
                raise DataError(f"{folder}: folder not found. Expected the layout {TARGET_LAYOUT}.")
        self.image_paths, self.mask_paths = _match_pairs(self.image_dir, self.mask_dir)
        self.img_ids = self.select_tiles(list(self.image_paths))
        self.label_set_ids = tuple(label_set_ids)
        bad = [i for i in self.label_set_ids if not num_classes <= i <= 255 or i == ignore_index]
        if bad:
            raise ConfigError(
                f"{self.mask_dir}: label_set_ids {bad} collide with the class ids "
                f"0..{num_classes - 1} or the ignore id {ignore_index}, or are not uint8 ids"
            )
        self._valid_ids = np.zeros(256, dtype=bool)
        self._valid_ids[:num_classes] = True
        self._valid_ids[ignore_index] = True
        self._valid_ids[list(self.label_set_ids)] = True
        self.skipped: list[str] = []
        if skip_invalid:
            self._drop_invalid_pairs()
        self.rare_class_crop = rare_class_crop
        if rare_class_crop is not None:
            if not isinstance(transform, TrainTransform):
                raise ConfigError(
                    f"{self.image_dir}: rare_class_crop needs transform=train_transform(...), "
                    f"which crops around the drawn pixel; got transform={transform!r}"
                )
            self._class_index = ClassPixelIndex(
                len(self.img_ids),
                lambda tile: self.labelled_mask(self.img_ids[tile]),
                num_classes,
                rare_class_crop.samples_per_class,
            )
            self._class_draw_weights = draw_weights(
                rare_class_crop, self._class_index, str(self.mask_dir)
            )

    def select_tiles(self, img_ids: list[str]) -> list[str]:
        """The stems this dataset serves, out of every matched pair (all of them here)."""
        return img_ids

    def __len__(self) -> int:
        return len(self.img_ids)

    def __getitem__(self, index: int) -> dict:
        crop = self.rare_class_crop
        if crop is not None and crop.p > 0 and float(torch.rand(())) < crop.p:
            _, tile, row, column = self._class_index.draw(self._class_draw_weights)
            img_id = self.img_ids[tile]
            image, mask = self.transform.around(*self.load_pair(img_id), row, column)
        else:
            img_id = self.img_ids[index]
            image, mask = self.load_pair(img_id)
            if self.transform is not None:
                image, mask = augment(self.transform, image, mask)
        return {
            "img": image_to_tensor(image),
            "gt_semantic_seg": torch.from_numpy(mask.astype(np.int64)),
            "img_id": img_id,
        }

    def load_pair(self, img_id: str) -> tuple[np.ndarray, np.ndarray]:
        """Read and check one pair: (H, W, 3) uint8 image (with a ``raster``: (H, W, bands)
        float32), (H, W) uint8 mask.

        Pixels the image marks as nodata (a raster's nodata value, mask band or alpha) are
        ``ignore_index`` in the mask, so the losses and metrics leave them out.
        """
        image_path, mask_path = self.image_paths[img_id], self.mask_paths[img_id]
        image, valid = read_image_and_valid(image_path, self.raster)
        image = computable(image)
        mask = self.load_mask(img_id)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{mask_path}: mask size {mask.shape[1]}x{mask.shape[0]} differs from its image "
                f"{image_path.name} ({image.shape[1]}x{image.shape[0]}, width x height)"
            )
        if valid is not None:
            mask = np.where(valid, mask, np.uint8(self.ignore_index))
        return image, mask

    def labelled_mask(self, img_id: str) -> np.ndarray:
        """The mask of ``img_id`` with the image's nodata as ignore (``load_pair``'s), reading
        the image only where it can mark nodata (rasters)."""
        if self.raster is None and not is_raster(self.image_paths[img_id]):
            return self.load_mask(img_id)
        return self.load_pair(img_id)[1]

    def load_mask(self, img_id: str) -> np.ndarray:
        """Read and check one mask: (H, W) uint8 class ids or ignore."""
        mask_path = self.mask_paths[img_id]
        mask = read_mask(mask_path)
        if not self._valid_ids[mask].all():
            bad = sorted(
                set(np.unique(mask).tolist()) - set(np.flatnonzero(self._valid_ids).tolist())
            )
            sets = f", label-set ids {list(self.label_set_ids)}" if self.label_set_ids else ""
            raise DataError(
                f"{mask_path}: mask values {bad} are not class ids; expected 0..{self.num_classes - 1}"
                f"{sets} or {self.ignore_index} (ignore)"
            )
        return mask

    def _drop_invalid_pairs(self) -> None:
        valid = []
        for img_id in self.img_ids:
            try:
                self.load_pair(img_id)
            except DataError as error:
                self.skipped.append(str(error))
            else:
                valid.append(img_id)
        if not valid:
            raise DataError(f"{self.image_dir}: no valid pair; first problem: {self.skipped[0]}")
        if self.skipped:
            log.warning(
                "%s: skipped %d of %d pairs (skip_invalid=True):\n  %s",
                self.image_dir,
                len(self.skipped),
                len(self.img_ids),
                "\n  ".join(self.skipped[:20]),
            )
        self.img_ids = valid


def _match_pairs(image_dir: Path, mask_dir: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Pair images and masks by stem; any unpaired file is an error that lists them all."""
    images, masks = list_files(image_dir), list_files(mask_dir)
    if not images:
        raise DataError(f"{image_dir}: no images found. Expected the layout {TARGET_LAYOUT}.")
    without_mask = sorted(set(images) - set(masks))
    without_image = sorted(set(masks) - set(images))
    problems = []
    if without_mask:
        problems.append(f"images without a mask in {mask_dir}: {preview(without_mask)}")
    if without_image:
        problems.append(f"masks without an image in {image_dir}: {preview(without_image)}")
    if problems:
        raise DataError("unmatched image/mask pairs (matched by file stem): " + "; ".join(problems))
    return images, {stem: masks[stem] for stem in images}
