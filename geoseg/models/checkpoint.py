"""Rebuilding a network from its checkpoint alone: architecture, class scheme and normalisation.

Every checkpoint the training stages write carries, next to the weights, a plain-Python record under
``checkpoint["geoseg"]``: the model class name and its constructor arguments (``net.init_args``),
the class names, the ignore id and the input normalisation. ``load_model`` needs nothing else.
"""

import logging
import os
from dataclasses import asdict, dataclass

import torch
from torch import nn

from geoseg.errors import CheckpointError
from geoseg.utils.checkpoint import (
    CHECKPOINT_KEY,
    NET_PREFIX,
    as_plain,
    extract_state_dict,
    read_checkpoint,
    save_checkpoint_atomic,
)

log = logging.getLogger(__name__)


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
    save_checkpoint_atomic({"state_dict": state, CHECKPOINT_KEY: spec.to_dict()}, path)


def check_resume_checkpoint(
    path: str | os.PathLike,
    net: nn.Module,
    classes,
    optimizer: torch.optim.Optimizer | None = None,
) -> None:
    """Check that the training state in ``path`` fits ``net`` (and ``optimizer``) before resuming.

    Resuming continues the very run that wrote the checkpoint: the model class, the class scheme,
    every weight's name and shape and the optimizer's parameter groups must be the same. Otherwise
    a CheckpointError says what differs (Lightning's own error would be a long key listing). Other
    constructor arguments that leave the weights' shapes alone (e.g. dropout) only warn.
    """
    checkpoint = read_checkpoint(path, mmap=True)
    problems = []
    record = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise CheckpointError(
            f"resume_ckpt_path {path}: not a training checkpoint (no 'state_dict' with the "
            "optimizer and loop state); use pretrained_ckpt_path to initialise from weights alone"
        )
    name = type(net).__name__
    if isinstance(record, dict):
        spec = ModelSpec.from_dict(record)
        if spec.model_class != name:
            problems.append(f"it holds a {spec.model_class}, the config's net is a {name}")
        if tuple(spec.classes) != tuple(classes):
            problems.append(
                f"its {spec.num_classes} classes ({', '.join(spec.classes)}) differ from the "
                f"config's {len(classes)} ({', '.join(classes)})"
            )
        init_args = getattr(net, "init_args", None)
        if not problems and isinstance(init_args, dict):
            differing = sorted(
                key
                for key in set(init_args) | set(spec.model_kwargs)
                if key != "pretrained"
                and as_plain(init_args.get(key)) != as_plain(spec.model_kwargs.get(key))
            )
            if differing:
                log.warning(
                    "resume_ckpt_path %s: the net was built with %s, the config's with %s",
                    path,
                    ", ".join(f"{k}={spec.model_kwargs.get(k)!r}" for k in differing),
                    ", ".join(f"{k}={init_args.get(k)!r}" for k in differing),
                )
    if not problems:
        state, own = extract_state_dict(checkpoint), net.state_dict()
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or mismatched:
            problems.append(
                f"its weights do not fit the config's {name}: {len(missing)} missing, "
                f"{len(unexpected)} unexpected, {len(mismatched)} of another shape "
                f"(first: {(mismatched + missing + unexpected)[0]})"
            )
    saved_groups = [len(group["params"]) for group in _param_groups(checkpoint)]
    if not problems and optimizer is not None and saved_groups:
        groups = [len(group["params"]) for group in optimizer.param_groups]
        if groups != saved_groups:
            problems.append(
                f"its optimizer has parameter groups of {saved_groups} tensors, the config's "
                f"optimizer {groups}"
            )
    if problems:
        raise CheckpointError(
            f"resume_ckpt_path {path}: {'; '.join(problems)}. Resume only the run that wrote it; "
            "to start a new run from its weights, set pretrained_ckpt_path instead"
        )


def _param_groups(checkpoint: dict) -> list[dict]:
    states = checkpoint.get("optimizer_states") or []
    return list(states[0].get("param_groups", [])) if len(states) == 1 else []
