"""Test-time augmentation, sliding windows, ensembles and prediction I/O."""

from geoseg.inference.io import (
    BackgroundWriter,
    InputImages,
    find_inputs,
    pending_inputs,
    write_prediction,
)
from geoseg.inference.run import predict_folder
from geoseg.inference.scene import (
    merged_scene,
    pending_scenes,
    predict_scene,
    predict_scenes,
    scene_output_paths,
    split_scenes,
)
from geoseg.inference.tta import (
    PRECISIONS,
    EnsemblePredictor,
    autocast_dtype,
    check_same_bands,
    check_same_classes,
    parse_flips,
    parse_scales,
)

__all__ = [
    "PRECISIONS",
    "BackgroundWriter",
    "EnsemblePredictor",
    "InputImages",
    "autocast_dtype",
    "check_same_bands",
    "check_same_classes",
    "find_inputs",
    "merged_scene",
    "parse_flips",
    "parse_scales",
    "pending_inputs",
    "pending_scenes",
    "predict_folder",
    "predict_scene",
    "predict_scenes",
    "scene_output_paths",
    "split_scenes",
    "write_prediction",
]
