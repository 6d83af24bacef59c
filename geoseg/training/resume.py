"""Checking a checkpoint before a run resumes from it."""

import logging
import os

import torch
from torch import nn

from geoseg.bands import check_same_input
from geoseg.errors import BandMismatchError, CheckpointError
from geoseg.models.record import CHECKPOINT_KEY, ModelSpec, differing_arguments
from geoseg.models.weight_files import extract_state_dict, read_checkpoint

log = logging.getLogger(__name__)


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
    # Lightning's own marks of a training checkpoint; a checkpoint of weights alone lacks them
    training_keys = ("state_dict", "pytorch-lightning_version", "optimizer_states", "loops")
    if not isinstance(checkpoint, dict) or not all(key in checkpoint for key in training_keys):
        raise CheckpointError(
            f"resume_ckpt_path {path}: not a training checkpoint (it lacks the optimizer and "
            "loop state: weights alone, e.g. an imported or converted model); use "
            "pretrained_ckpt_path to initialise from its weights"
        )
    problems = []
    name = type(net).__name__
    record = checkpoint.get(CHECKPOINT_KEY)
    if isinstance(record, dict):
        spec = ModelSpec.from_dict(record)
        spec.check_architecture(f"resume_ckpt_path {path}")
        if spec.model_class != name:
            problems.append(f"it holds a {spec.model_class}, the config's net is a {name}")
        if tuple(spec.classes) != tuple(classes):
            problems.append(
                f"its {spec.num_classes} classes ({', '.join(spec.classes)}) differ from the "
                f"config's {len(classes)} ({', '.join(classes)})"
            )
        try:
            check_same_input(spec.raster, getattr(net, "raster", None), "it", "the config's net")
        except BandMismatchError as error:
            problems.append(str(error))
        init_args = getattr(net, "init_args", None)
        if not problems and isinstance(init_args, dict):
            differing = differing_arguments(init_args, spec.model_kwargs, skip=("pretrained",))
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
