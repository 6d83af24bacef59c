"""Augmentations (albumentations, on uint8 RGB or float32 bands), applied reproducibly, and images
as tensors."""

import albumentations as A
import cv2
import numpy as np
import torch

from geoseg.classes import IGNORE_INDEX


class TrainTransform:
    """The training augmentation: random scale, random crop to ``img_size`` (padding with ignore
    where the scaled tile is smaller), flips, 90-degree rotations and mild colour jitter (8-bit
    RGB only: other bands keep their values, which have a physical meaning).

    Called as an albumentations transform (``transform(image=..., mask=...)``), it draws from
    torch's generator (as ``augment`` does), so a Dataset of one's own that calls it directly is
    reproducible under the run's seed, loader workers included. ``around`` makes the same
    augmentation with the crop placed on a given pixel instead of at random.
    """

    def __init__(
        self,
        img_size: int = 512,
        *,
        scale_range: tuple[float, float] = (0.75, 1.5),
        ignore_index: int = IGNORE_INDEX,
    ):
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range={scale_range!r}: expected 0 < low <= high")
        self.img_size = img_size
        self.scale_range = (float(low), float(high))
        self.ignore_index = ignore_index

        def pipeline(colour: bool) -> A.Compose:
            return A.Compose(
                [
                    # RandomScale draws the factor as 1 + U(limit): bilinear for images, nearest
                    # for masks.
                    A.RandomScale(
                        scale_limit=(low - 1.0, high - 1.0),
                        interpolation=cv2.INTER_LINEAR,
                        p=1.0,
                    ),
                    A.PadIfNeeded(
                        min_height=img_size,
                        min_width=img_size,
                        border_mode=cv2.BORDER_CONSTANT,
                        fill=0,
                        fill_mask=ignore_index,
                    ),
                    A.RandomCrop(height=img_size, width=img_size),
                    *_appearance(colour),
                ]
            )

        self.compose, self.compose_bands = pipeline(colour=True), pipeline(colour=False)
        self.appearance = A.Compose(_appearance(colour=True))
        self.appearance_bands = A.Compose(_appearance(colour=False))

    def __call__(self, **data) -> dict:
        compose = self.compose if _is_rgb(data["image"]) else self.compose_bands
        compose.set_random_seed(_seed_from_torch())
        return compose(**data)

    def around(
        self, image: np.ndarray, mask: np.ndarray, row: int, column: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The augmentation with its crop holding the tile's pixel (row, column): centred on it
        where the scaled tile allows, moved inside the tile at its edges. Draws from torch's
        generator, as ``augment`` does."""
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand(()))
        height, width = mask.shape
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        # Where the pixel lands in the scaled tile (nearest-neighbour's own mapping).
        row = min(int((row + 0.5) * scale), size[1] - 1)
        column = min(int((column + 0.5) * scale), size[0] - 1)
        pad_bottom, pad_right = max(self.img_size - size[1], 0), max(self.img_size - size[0], 0)
        if pad_bottom or pad_right:
            image = cv2.copyMakeBorder(
                image, 0, pad_bottom, 0, pad_right, cv2.BORDER_CONSTANT, value=0
            )
            mask = cv2.copyMakeBorder(
                mask, 0, pad_bottom, 0, pad_right, cv2.BORDER_CONSTANT, value=self.ignore_index
            )

        def start(centre: int, length: int) -> int:
            return min(max(centre - self.img_size // 2, 0), length - self.img_size)

        top, left = start(row, mask.shape[0]), start(column, mask.shape[1])
        window = (slice(top, top + self.img_size), slice(left, left + self.img_size))
        appearance = self.appearance if _is_rgb(image) else self.appearance_bands
        return augment(appearance, image[window], mask[window])


def _is_rgb(image: np.ndarray) -> bool:
    return image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3


def _appearance(colour: bool) -> list:
    """The augmentations after the crop: flips, 90-degree rotations, mild colour jitter (with
    ``colour``)."""
    jitter = A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5)
    return [
        A.HorizontalFlip(p=0.5),
        A.VerticalFlip(p=0.5),
        A.RandomRotate90(p=0.5),
        *([jitter] if colour else []),
    ]


def train_transform(
    img_size: int = 512,
    *,
    scale_range: tuple[float, float] = (0.75, 1.5),
    ignore_index: int = IGNORE_INDEX,
) -> TrainTransform:
    """Random scale, random crop to ``img_size`` (padding with ignore where the tile is smaller),
    flips, 90-degree rotations and mild colour jitter (a ``TrainTransform``)."""
    return TrainTransform(img_size, scale_range=scale_range, ignore_index=ignore_index)


def augment(transform, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply an albumentations-style ``transform(image=..., mask=...)`` reproducibly.

    albumentations 2.x draws from generators of its own, seeded from OS entropy, which
    ``torch.manual_seed`` and ``seed_everything`` do not reach: two runs with the same seed would
    augment differently. So the transform is re-seeded for every sample from torch's generator,
    which the DataLoader seeds per worker from the run's seed.
    """
    if hasattr(transform, "set_random_seed"):  # a TrainTransform seeds itself the same way
        transform.set_random_seed(_seed_from_torch())
    augmented = transform(image=image, mask=mask)
    return augmented["image"], augmented["mask"]


def _seed_from_torch() -> int:
    """A seed for albumentations' own generators, drawn from torch's (seeded by the run)."""
    return int(torch.randint(0, 2**32, ()).item())


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """image: (H, W, C) array -> (C, H, W) float32 on its own scale (0-255 for 8-bit RGB).

    Datasets hand images to the network on their native scale: the network normalises its input.
    """
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
