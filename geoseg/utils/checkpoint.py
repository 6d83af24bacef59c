"""Reading and writing checkpoints safely, and initialising a network from one (weights only)."""

import logging
import os
import re
from pathlib import Path

import torch
from torch import nn

from geoseg.errors import CheckpointError, preview

log = logging.getLogger(__name__)

# Where the LightningModules keep the trained network: its keys in state_dict start with this.
NET_PREFIX = "net."
# The plain-Python model record written next to the weights (see geoseg.models.loading).
CHECKPOINT_KEY = "geoseg"


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


def save_checkpoint_atomic(checkpoint: dict, path: str | os.PathLike) -> None:
    """``torch.save`` to a hidden temporary file beside ``path``, flush it to disk, rename it over.

    A kill, crash or full disk during the write leaves the previous file at ``path`` intact. The
    temporary file (``.<name>.tmp``) is removed when the write fails, and overwritten by the next
    write after a kill. Same folder, so the rename never crosses file systems.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(checkpoint, tmp)
        _fsync(tmp)
        os.replace(tmp, path)
    except BaseException as error:
        tmp.unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise CheckpointError(
                f"{path}: could not write the checkpoint ({error}); the previous one is intact"
            ) from error
        raise
    _fsync(path.parent)  # the rename itself survives a power cut


def _fsync(path: Path) -> None:
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:  # e.g. folders on Windows; the data is written, durability is best effort
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


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
    shares no weight with the network is an error rather than a silent no-op, and so is a
    checkpoint of this project recorded as another model class. Another class count (a head of
    another shape) is reported: fine-tuning to new classes is legitimate. A file of backbone
    weights alone (a timm state dict, keys without ``backbone.``) is mapped onto ``net.backbone``.
    """
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict")
    record = checkpoint.get(CHECKPOINT_KEY)
    if isinstance(record, dict):
        _check_same_architecture(net, record, path)
    state = extract_state_dict(checkpoint)
    own = net.state_dict()
    state, backbone_only = _map_backbone_only(net, state, own)
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
        "initialised %s from %s%s: %d of %d weights loaded; %d missing, %d unexpected, "
        "%d shape-mismatched%s",
        type(net).__name__,
        path,
        " (backbone weights only, mapped onto net.backbone)" if backbone_only else "",
        len(loadable),
        len(own),
        len(report["missing"]),
        len(report["unexpected"]),
        len(report["mismatched"]),
        "".join(f"\n  {kind}: {preview(keys, limit=8)}" for kind, keys in report.items() if keys),
    )
    return report


def _check_same_architecture(net: nn.Module, record: dict, path) -> None:
    """A checkpoint of another model class is an error; other constructor arguments a warning."""
    name, recorded = type(net).__name__, record.get("model_class")
    if recorded != name:
        raise CheckpointError(
            f"{path}: holds a {recorded} but the config's net is a {name}; pretrained_ckpt_path "
            "initialises the same architecture (another class count is fine). To start from "
            "backbone weights alone, give a file of the backbone's state dict"
        )
    init_args = getattr(net, "init_args", None)
    recorded_args = record.get("model_kwargs")
    if not isinstance(init_args, dict) or not isinstance(recorded_args, dict):
        return
    differing = sorted(
        key
        for key in set(init_args) | set(recorded_args)
        if key not in ("num_classes", "pretrained")
        and as_plain(init_args.get(key)) != as_plain(recorded_args.get(key))
    )
    if differing:
        log.warning(
            "%s: recorded as %s with %s; the config's net has %s: weights of other shapes are not "
            "loaded",
            path,
            name,
            ", ".join(f"{key}={recorded_args.get(key)!r}" for key in differing),
            ", ".join(f"{key}={init_args.get(key)!r}" for key in differing),
        )
    classes = record.get("classes") or []
    if "num_classes" in init_args and len(classes) != init_args["num_classes"]:
        log.warning(
            "%s: trained for %d classes, the net has %d: its class head is not loaded "
            "(fine-tuning to new classes)",
            path,
            len(classes),
            init_args["num_classes"],
        )


def _map_backbone_only(
    net: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], bool]:
    """Keys of a bare backbone state dict renamed to ``backbone.<key>`` when that fits better.

    timm's feature wrappers flatten ``layers.0`` to ``layers_0``; both spellings are tried.
    """
    direct = sum(key in own for key in state)
    if not isinstance(getattr(net, "backbone", None), nn.Module) or 2 * direct >= len(state):
        return state, False
    mapped = {}
    for key, value in state.items():
        candidates = (f"backbone.{key}", "backbone." + re.sub(r"^(\w+)\.(\d+)\.", r"\1_\2.", key))
        mapped[next((c for c in candidates if c in own), key)] = value
    if sum(key in own for key in mapped) <= direct:
        return state, False
    return mapped, True


def as_plain(value):
    """Tuples as lists, for comparing constructor arguments across a save and load."""
    if isinstance(value, (list, tuple)):
        return [as_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: as_plain(v) for k, v in value.items()}
    return value
