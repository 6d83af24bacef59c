"""Rebuilding a network from its checkpoint alone: architecture, class scheme and normalisation.

Every checkpoint the training stages write carries, next to the weights, a plain-Python record under
``checkpoint["geoseg"]``: the model class name and its constructor arguments (``net.init_args``),
the class names, the ignore id and the input normalisation. ``load_model`` needs nothing else.
"""

import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from geoseg.errors import CheckpointError
from geoseg.utils.checkpoint import NET_PREFIX, extract_state_dict, read_checkpoint

CHECKPOINT_KEY = "geoseg"


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint records besides the weights; plain values only (``weights_only`` loads)."""

    model_class: str
    model_kwargs: dict
    classes: tuple[str, ...]
    ignore_index: int
    normalization: dict

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def to_dict(self) -> dict:
        spec = asdict(self)
        spec["classes"] = list(self.classes)
        spec["normalization"] = {k: [float(x) for x in v] for k, v in self.normalization.items()}
        return spec

    @classmethod
    def from_dict(cls, spec: dict) -> "ModelSpec":
        return cls(
            model_class=spec["model_class"],
            model_kwargs=dict(spec["model_kwargs"]),
            classes=tuple(spec["classes"]),
            ignore_index=int(spec["ignore_index"]),
            normalization={k: tuple(v) for k, v in spec["normalization"].items()},
        )


def describe_model(net: nn.Module, classes, ignore_index: int, normalization: dict) -> ModelSpec:
    """The spec of ``net`` as the training stages store it in their checkpoints."""
    from geoseg.models import MODEL_REGISTRY

    name = type(net).__name__
    if MODEL_REGISTRY.get(name) is not type(net) or not hasattr(net, "init_args"):
        raise CheckpointError(
            f"{name} cannot be rebuilt from a checkpoint: register it in geoseg.models.MODEL_REGISTRY "
            "and give it an `init_args` dict of its constructor arguments"
        )
    return ModelSpec(
        name, dict(net.init_args), tuple(classes), int(ignore_index), dict(normalization)
    )


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved in ``path`` in eval mode; its ``spec`` attribute holds the ModelSpec."""
    from geoseg.models import MODEL_REGISTRY

    checkpoint = read_checkpoint(path)
    if CHECKPOINT_KEY not in checkpoint:
        raise CheckpointError(
            f"{path}: no '{CHECKPOINT_KEY}' model record; only checkpoints written by this project's "
            "training stages can be rebuilt without a config"
        )
    spec = ModelSpec.from_dict(checkpoint[CHECKPOINT_KEY])
    if spec.model_class not in MODEL_REGISTRY:
        raise CheckpointError(
            f"{path}: unknown model class '{spec.model_class}'; known: {', '.join(MODEL_REGISTRY)}"
        )
    net = MODEL_REGISTRY[spec.model_class](**spec.model_kwargs)
    try:
        net.load_state_dict(extract_state_dict(checkpoint), strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {spec.model_class}: {error}") from error
    net.spec = spec
    return net.to(map_location).eval()


def save_model(
    net: nn.Module,
    path: str | os.PathLike,
    *,
    classes,
    ignore_index: int,
    normalization: dict,
) -> None:
    """Write ``net`` as a minimal checkpoint that ``load_model`` rebuilds (weights + ModelSpec)."""
    spec = describe_model(net, classes, ignore_index, normalization)
    state = {f"{NET_PREFIX}{key}": value for key, value in net.state_dict().items()}
    torch.save({"state_dict": state, CHECKPOINT_KEY: spec.to_dict()}, path)
