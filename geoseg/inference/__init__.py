"""Test-time augmentation, sliding windows, ensembles and prediction I/O."""

from geoseg.inference.ensemble import Ensemble
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
    MAX_SCALE,
    PRECISIONS,
    EnsemblePredictor,
    autocast_dtype,
    check_same_bands,
    check_same_classes,
    check_same_ignore_index,
    check_weights,
    parse_flips,
    parse_scales,
    parse_weights,
)

__all__ = [
    "MAX_SCALE",
    "PRECISIONS",
    "STORE_DTYPES",
    "BackgroundWriter",
    "Ensemble",
    "EnsemblePredictor",
    "InputImages",
    "Selection",
    "autocast_dtype",
    "check_same_bands",
    "check_same_classes",
    "check_same_ignore_index",
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
