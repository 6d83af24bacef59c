"""Augmentations (albumentations, on uint8 arrays), applied reproducibly, and images as tensors."""

import albumentations as A
import cv2
import numpy as np
import torch

from geoseg.classes import IGNORE_INDEX


def train_transform(
    img_size: int = 512,
    *,
    scale_range: tuple[float, float] = (0.75, 1.5),
    ignore_index: int = IGNORE_INDEX,
) -> A.Compose:
    """Random scale, random crop to ``img_size`` (padding with ignore where the tile is smaller),
    flips, 90-degree rotations and mild colour jitter."""
    low, high = scale_range
    return A.Compose(
        [
            # RandomScale draws the factor as 1 + U(limit), bilinear for images, nearest for masks.
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0), interpolation=cv2.INTER_LINEAR, p=1.0
            ),
            A.PadIfNeeded(
                min_height=img_size,
                min_width=img_size,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=ignore_index,
            ),
            A.RandomCrop(height=img_size, width=img_size),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    )


def augment(transform, image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Apply an albumentations-style ``transform(image=..., mask=...)`` reproducibly.

    albumentations 2.x draws from generators of its own, seeded from OS entropy, which
    ``torch.manual_seed`` and ``seed_everything`` do not reach: two runs with the same seed would
    augment differently. So the transform is re-seeded for every sample from torch's generator,
    which the DataLoader seeds per worker from the run's seed.
    """
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(int(torch.randint(0, 2**32, ()).item()))
    augmented = transform(image=image, mask=mask)
    return augmented["image"], augmented["mask"]


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """image: (H, W, C) array -> (C, H, W) float32 on its own scale (0-255 for 8-bit RGB).

    Datasets hand images to the network on their native scale: the network normalises its input.
    """
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32))
