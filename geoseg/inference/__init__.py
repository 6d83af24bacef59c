"""Test-time augmentation, sliding windows, ensembles and prediction I/O."""

from geoseg.inference.io import (
    BackgroundWriter,
    InputImages,
    find_inputs,
    pending_inputs,
    write_prediction,
)
from geoseg.inference.run import predict_folder
from geoseg.inference.tta import EnsemblePredictor, check_same_classes, parse_flips, parse_scales

__all__ = [
    "BackgroundWriter",
    "EnsemblePredictor",
    "InputImages",
    "check_same_classes",
    "find_inputs",
    "parse_flips",
    "parse_scales",
    "pending_inputs",
    "predict_folder",
    "write_prediction",
]
