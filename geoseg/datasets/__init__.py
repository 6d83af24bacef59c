"""Class scheme, datasets, transforms and synthetic data."""

from geoseg.classes import (
    CLASSES,
    IGNORE_INDEX,
    IMAGENET_NORMALIZATION,
    NUM_CLASSES,
    OEM_TO_TARGET,
    PALETTE,
    colorize_mask,
)
from geoseg.datasets.biodiversity_combined_dataset import BiodiversityCombinedDataset
from geoseg.datasets.self_training import SelfTrainingDataset
from geoseg.datasets.target_dataset import TargetDataset
from geoseg.datasets.transforms import augment, image_to_tensor, train_transform

__all__ = [
    "BiodiversityCombinedDataset",
    "CLASSES",
    "IGNORE_INDEX",
    "IMAGENET_NORMALIZATION",
    "NUM_CLASSES",
    "OEM_TO_TARGET",
    "PALETTE",
    "SelfTrainingDataset",
    "TargetDataset",
    "colorize_mask",
    "augment",
    "image_to_tensor",
    "train_transform",
]
