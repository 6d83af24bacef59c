"""Segmentation networks and their checkpoint record.

Every network is an encoder-decoder on a timm (or, for FT-UNetFormer, this project's Swin)
backbone: UNetFormer, FTUNetFormer, SegFormer and UPerNet. ``load_model`` rebuilds any
registered network from a checkpoint alone; ``python -m geoseg.models`` lists them.
"""

from geoseg.models.checkpoint import load_model, load_model_and_spec, save_model
from geoseg.models.ftunetformer import FTUNetFormer
from geoseg.models.record import MODEL_REGISTRY, ModelSpec, register_model
from geoseg.models.segformer import SegFormer
from geoseg.models.unetformer import UNetFormer
from geoseg.models.upernet import UPerNet

__all__ = [
    "FTUNetFormer",
    "MODEL_REGISTRY",
    "ModelSpec",
    "SegFormer",
    "UNetFormer",
    "UPerNet",
    "load_model",
    "load_model_and_spec",
    "register_model",
    "save_model",
]
