"""Segmentation networks: UNetFormer (CNN backbone) and FTUNetFormer (Swin backbone)."""

from geoseg.models.ftunetformer import FTUNetFormer
from geoseg.models.loading import ModelSpec, load_model, save_model
from geoseg.models.unetformer import UNetFormer

# class name -> class, as recorded in checkpoints
MODEL_REGISTRY = {cls.__name__: cls for cls in (FTUNetFormer, UNetFormer)}

__all__ = ["FTUNetFormer", "MODEL_REGISTRY", "ModelSpec", "UNetFormer", "load_model", "save_model"]
