"""Initialise a network from a weights file: the config's ``pretrained_ckpt_path``.

``load_pretrained_weights`` loads every weight of the file that fits and reports the others: a
checkpoint of this project (of the same class), a network in the published layouts (GeoSeg, Swin
releases), or a file of backbone weights alone.
"""

import logging
import os
import re

import torch
from torch import nn

from geoseg.errors import CheckpointError, preview
from geoseg.models.geoseg_format import from_published_layouts
from geoseg.models.record import CHECKPOINT_KEY, ModelSpec, differing_arguments
from geoseg.models.swin import SwinTransformer
from geoseg.models.weight_files import extract_state_dict, read_checkpoint, weight_differences

__all__ = ["load_pretrained_weights"]

log = logging.getLogger(__name__)


def load_pretrained_weights(net: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Initialise ``net`` from the weights in ``path``, loading every key that fits.

    Returns and logs what did not load: ``missing`` (in the network, not in the file),
    ``unexpected`` (in the file, not in the network) and ``mismatched`` (shape differs). A file that
    shares no weight with the network is an error rather than a silent no-op, and so is a
    checkpoint of this project recorded as another model class. Another class count (a head of
    another shape) is reported: fine-tuning to new classes is legitimate. A file of backbone
    weights alone (a timm state dict, keys without ``backbone.``) is mapped onto ``net.backbone``.
    GeoSeg checkpoints and Swin files in the timm, original or mmsegmentation layout (GeoSeg's
    ``stseg_base.pth``) are read under this project's key names (``from_published_layouts``).
    """
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict")
    if isinstance(checkpoint.get(CHECKPOINT_KEY), dict):
        _check_same_architecture(net, ModelSpec.from_dict(checkpoint[CHECKPOINT_KEY]), path)
    swin = isinstance(getattr(net, "backbone", None), SwinTransformer)
    state, left_out = from_published_layouts(extract_state_dict(checkpoint), swin_backbone=swin)
    own = net.state_dict()
    state, backbone_only = _map_backbone_only(net, state, own)
    backbone_only = backbone_only or all(key.startswith("backbone.") for key in state)
    report = weight_differences(own, state)
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not loadable:
        raise CheckpointError(
            f"{path}: none of its {len(state)} weights match the network "
            f"({type(net).__name__}, {len(own)} weights); is it a checkpoint of this architecture?"
        )
    net.load_state_dict(loadable, strict=False)
    complete = not any(report.values())
    log.log(
        logging.INFO if complete else logging.WARNING,
        "initialised %s from %s%s: %d of %d weights loaded; %d missing, %d unexpected, "
        "%d shape-mismatched%s%s",
        type(net).__name__,
        path,
        " (backbone weights only, mapped onto net.backbone)" if backbone_only else "",
        len(loadable),
        len(own),
        len(report["missing"]),
        len(report["unexpected"]),
        len(report["mismatched"]),
        "".join(f"\n  {kind}: {preview(keys, limit=8)}" for kind, keys in report.items() if keys),
        f"\n  left out (derived buffers, heads of other networks): {preview(left_out, limit=8)}"
        if left_out
        else "",
    )
    return report


def _check_same_architecture(net: nn.Module, spec: ModelSpec, path) -> None:
    """A checkpoint of another model class is an error; other constructor arguments a warning."""
    name = type(net).__name__
    spec.check_architecture(path)
    if spec.model_class != name:
        raise CheckpointError(
            f"{path}: holds a {spec.model_class} but the config's net is a {name}; "
            "pretrained_ckpt_path initialises the same architecture (another class count is "
            "fine). To start from backbone weights alone, give a file of the backbone's state dict"
        )
    init_args = getattr(net, "init_args", None)
    if not isinstance(init_args, dict):
        return
    differing = differing_arguments(
        init_args, spec.model_kwargs, skip=("num_classes", "pretrained")
    )
    if differing:
        log.warning(
            "%s: recorded as %s with %s; the config's net has %s: weights of other shapes are not "
            "loaded",
            path,
            name,
            ", ".join(f"{key}={spec.model_kwargs.get(key)!r}" for key in differing),
            ", ".join(f"{key}={init_args.get(key)!r}" for key in differing),
        )
    if "num_classes" in init_args and spec.num_classes != init_args["num_classes"]:
        log.warning(
            "%s: trained for %d classes, the net has %d: its class head is not loaded "
            "(fine-tuning to new classes)",
            path,
            spec.num_classes,
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
