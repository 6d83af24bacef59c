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
from geoseg.datasets.biodiversity_combined_dataset import (
    BiodiversityCombinedDataset,
    combined_label_sets,
)
from geoseg.datasets.mixing import (
    MIXUP_TARGET,
    MIXUP_WEIGHT,
    BatchMix,
    ClassMix,
    CutMix,
    MixUp,
    ignore_mask,
    mixed_loss,
)
from geoseg.datasets.rare_class_crop import RareClassCrop
from geoseg.datasets.sampling import DomainBalancedBatchSampler
from geoseg.datasets.self_training import SelfTrainingDataset
from geoseg.datasets.stats import (
    BAND_STATISTICS_FILE,
    WEIGHT_SCHEMES,
    BandStatistics,
    ClassStatistics,
    band_statistics,
    band_statistics_cached,
    class_statistics,
    class_weights,
)
from geoseg.datasets.target_dataset import TargetDataset
from geoseg.datasets.transforms import augment, image_to_tensor, train_transform

__all__ = [
    "BAND_STATISTICS_FILE",
    "BandStatistics",
    "BatchMix",
    "BiodiversityCombinedDataset",
    "CLASSES",
    "ClassStatistics",
    "ClassMix",
    "CutMix",
    "DomainBalancedBatchSampler",
    "IGNORE_INDEX",
    "IMAGENET_NORMALIZATION",
    "MIXUP_TARGET",
    "MIXUP_WEIGHT",
    "MixUp",
    "NUM_CLASSES",
    "OEM_TO_TARGET",
    "PALETTE",
    "RareClassCrop",
    "SelfTrainingDataset",
    "TargetDataset",
    "WEIGHT_SCHEMES",
    "colorize_mask",
    "combined_label_sets",
    "augment",
    "band_statistics",
    "band_statistics_cached",
    "class_statistics",
    "class_weights",
    "ignore_mask",
    "image_to_tensor",
    "mixed_loss",
    "train_transform",
]
