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
from geoseg.inference.selection import (
    STORE_DTYPES,
    Selection,
    greedy_selection,
    member_outputs,
    read_selection,
    select_ensemble,
    selection_record,
    write_selection,
)
from geoseg.inference.tta import (
    PRECISIONS,
    EnsemblePredictor,
    autocast_dtype,
    check_same_bands,
    check_same_classes,
    check_weights,
    parse_flips,
    parse_scales,
    parse_weights,
)

__all__ = [
    "PRECISIONS",
    "STORE_DTYPES",
    "BackgroundWriter",
    "EnsemblePredictor",
    "InputImages",
    "Selection",
    "autocast_dtype",
    "check_same_bands",
    "check_same_classes",
    "check_weights",
    "find_inputs",
    "greedy_selection",
    "member_outputs",
    "merged_scene",
    "parse_flips",
    "parse_scales",
    "parse_weights",
    "pending_inputs",
    "pending_scenes",
    "predict_folder",
    "predict_scene",
    "predict_scenes",
    "read_selection",
    "scene_output_paths",
    "select_ensemble",
    "selection_record",
    "split_scenes",
    "write_prediction",
    "write_selection",
]
