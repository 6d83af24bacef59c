"""LightningModules and the stage runner."""

from geoseg.training.data import data_loaders
from geoseg.training.kd import KDModule
from geoseg.training.optim import param_groups
from geoseg.training.run import build_trainer, default_precision, train
from geoseg.training.supervised import SupervisedModule

__all__ = [
    "KDModule",
    "SupervisedModule",
    "build_trainer",
    "data_loaders",
    "default_precision",
    "param_groups",
    "train",
]
