"""Weights files of any origin: reading one safely, the network's weights in it, how they fit.

Files are read with ``weights_only=True``: no pickled code runs. This module imports nothing else
of ``geoseg.models``: the backbone loaders, the checkpoint record and the pretrained
initialisation all read files through it.
"""

import os
from pathlib import Path

import torch

from geoseg.errors import CheckpointError

__all__ = ["NET_PREFIX", "extract_state_dict", "read_checkpoint", "weight_differences"]

# Where the LightningModules keep the trained network: its keys in state_dict start with this.
NET_PREFIX = "net."


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """Load a checkpoint file with ``weights_only=True`` (no pickled code runs).

    ``mmap=True`` maps the tensors instead of reading them, for a cheap look at a large file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(
            f"{path}: not a readable weights-only checkpoint ({error})"
        ) from error


def extract_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint or a plain (possibly wrapped) state dict."""
    state = checkpoint
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if any(key.startswith(NET_PREFIX) for key in state):
        state = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def weight_differences(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> dict[str, list[str]]:
    """The keys of ``state`` that do not fit a network whose state dict is ``own``: ``missing``
    (in the network, not in ``state``), ``unexpected`` (the reverse) and ``mismatched`` (in both,
    another shape), each sorted."""
    return {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "mismatched": sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape),
    }
