"""Prediction: an ``Ensemble`` of checkpoints with test-time augmentation, and a
``PredictionJob`` that ``predict`` runs on a folder's PNG/JPEG tiles and GeoTIFF scenes."""

from geoseg.inference.ensemble import Ensemble
from geoseg.inference.io import BackgroundWriter, InputImages, find_inputs, write_prediction
from geoseg.inference.job import PredictionJob, is_scene, split_scenes
from geoseg.inference.predict import predict
from geoseg.inference.scene import merged_scene, predict_scene
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
    "PredictionJob",
    "Selection",
    "autocast_dtype",
    "check_same_bands",
    "check_same_classes",
    "check_same_ignore_index",
    "check_weights",
    "find_inputs",
    "greedy_selection",
    "is_scene",
    "member_outputs",
    "merged_scene",
    "parse_flips",
    "parse_scales",
    "parse_weights",
    "predict",
    "predict_scene",
    "read_selection",
    "select_ensemble",
    "selection_record",
    "split_scenes",
    "write_prediction",
    "write_selection",
]
