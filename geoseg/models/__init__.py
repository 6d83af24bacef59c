"""Segmentation networks and their checkpoint record.

UNetFormer (CNN backbone) and FTUNetFormer (Swin backbone); ``load_model`` rebuilds any registered
network from a checkpoint alone.
"""

from geoseg.models.checkpoint import (
    MODEL_REGISTRY,
    ModelSpec,
    load_model,
    load_model_and_spec,
    register_model,
    save_model,
)
from geoseg.models.ftunetformer import FTUNetFormer
from geoseg.models.unetformer import UNetFormer

__all__ = [
    "FTUNetFormer",
    "MODEL_REGISTRY",
    "ModelSpec",
    "UNetFormer",
    "load_model",
    "load_model_and_spec",
    "register_model",
    "save_model",
]
