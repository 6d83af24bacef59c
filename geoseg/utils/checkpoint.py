"""Reading checkpoints safely and initialising a network from one (weights only)."""

import logging
import os
from pathlib import Path

import torch
from torch import nn

from geoseg.errors import CheckpointError

log = logging.getLogger(__name__)

# Where the LightningModules keep the trained network: its keys in state_dict start with this.
NET_PREFIX = "net."


def read_checkpoint(path: str | os.PathLike) -> dict:
    """Load a checkpoint file with ``weights_only=True`` (no pickled code runs)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
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


def load_pretrained_weights(net: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Initialise ``net`` from the weights in ``path``, loading every key that fits.

    Returns and logs what did not load: ``missing`` (in the network, not in the file),
    ``unexpected`` (in the file, not in the network) and ``mismatched`` (shape differs). A file that
    shares no weight with the network is an error rather than a silent no-op.
    """
    state = extract_state_dict(read_checkpoint(path))
    own = net.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not loadable:
        raise CheckpointError(
            f"{path}: none of its {len(state)} weights match the network "
            f"({type(net).__name__}, {len(own)} weights); is it a checkpoint of this architecture?"
        )
    net.load_state_dict(loadable, strict=False)
    report = {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "mismatched": sorted(mismatched),
    }
    complete = not any(report.values())
    log.log(
        logging.INFO if complete else logging.WARNING,
        "initialised %s from %s: %d of %d weights loaded; %d missing, %d unexpected, "
        "%d shape-mismatched%s",
        type(net).__name__,
        path,
        len(loadable),
        len(own),
        len(report["missing"]),
        len(report["unexpected"]),
        len(report["mismatched"]),
        "".join(f"\n  {kind}: {_preview(keys)}" for kind, keys in report.items() if keys),
    )
    return report


def _preview(keys: list[str], limit: int = 8) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} ... and {len(keys) - limit} more"
