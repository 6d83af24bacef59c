"""Load a local weights file into a timm ``features_only`` backbone, checking every key.

``load_backbone_weights(backbone, name, path, model_kwargs)`` reads a ``.safetensors`` file or a
torch checkpoint (``.pth``/``.pt``/``.bin``/``.ckpt``, read weights-only) and maps it onto timm's
key names, whichever of these layouts it is in:

* timm's own: the full model's state dict, with or without its classifier.
* the same wrapped by a training framework: ``module.``, ``model.``, ``backbone.``, ``encoder.``,
  MoCo's ``module.encoder_q.`` (its momentum encoder ``encoder_k.*`` and ``queue`` are left out),
  Satlas' ``backbone.backbone.``, DINO's ``teacher`` dict. The prefix is not configured: the one
  whose keys fit the model best is taken.
* the original releases that timm converts itself (the ``checkpoint_filter_fn`` of the model's
  timm module: Microsoft's Swin and Swin-V2, Facebook's ConvNeXt, PVT-v2, ...).
* torchvision's Swin-V2 (``features.*``), mapped onto timm's ``swinv2_*`` models.

After mapping, the file must hold every tensor of the backbone with its shape, and nothing the full
timm model does not know (a head of another network, e.g. MoCo's projection MLP, is left out):
anything else is a ``CheckpointError`` naming the keys. What was left out is logged.

Which published weights (SSL4EO-S12, SSL4EO-L, SeCo, Satlas, ...) fit which timm backbone name is
listed in docs/models.md.

torchvision's Swin-V2 and timm's compute the same features (checked to 1e-5) when timm is built
with ``window_size=8``, its default ``pretrained_window_sizes`` (0, which normalises the position
bias table as torchvision does) and ``img_size`` equal to the input's size, a multiple of 256
pixels. Elsewhere they differ in the last stages: torchvision pads a feature map to whole windows
before it shifts them and timm after, and timm decides from ``img_size`` at build time whether a
stage small enough for one window shifts at all.
"""

import argparse
import logging
import os
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import timm
import torch
from timm.models import adapt_input_conv
from torch import nn

from geoseg.errors import CheckpointError, preview
from geoseg.models.weight_files import extract_state_dict, read_checkpoint, weight_differences

log = logging.getLogger(__name__)

State = dict[str, torch.Tensor]

# Arguments of timm.create_model that only the features wrapper takes (the full model refuses
# them), and ``pretrained``, which would download.
_FEATURES_ONLY_KWARGS = ("features_only", "out_indices", "feature_cls", "pretrained")
# When two prefixes fit equally well: the network a framework evaluates (MoCo's query encoder,
# DINO's teacher) rather than its momentum or student copy.
_PREFERRED = {"encoder_q", "base_encoder", "teacher", "online_network"}
_COPIES = {"encoder_k", "momentum_encoder", "student", "target_network"}
# torchvision's Swin-V2 buffers that the model derives from its window size.
_DERIVED_BUFFERS = ("relative_position_index", "relative_coords_table", "attn_mask")


def load_backbone_weights(
    backbone: nn.Module, name: str, path: str | os.PathLike, model_kwargs: dict | None = None
) -> None:
    """Load the weights file `path` into `backbone`, a timm features_only model built with
    timm.create_model(name, features_only=True, **model_kwargs)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: backbone weights file not found; expected a .safetensors or torch "
            f"(.pth/.pt/.bin/.ckpt) state dict of timm model '{name}' or a published checkpoint "
            "of it (see geoseg.models.backbone_weights)"
        )
    file_state = _read_tensors(path)
    full = _FullModel(name, model_kwargs or {})
    own = backbone.state_dict()
    to_backbone = _backbone_names(full.keys, own)
    from_backbone = {feature: key for key, feature in to_backbone.items()}

    prefix, (state, layout, dropped) = _choose_prefix(file_state, full, from_backbone)
    outside = sorted(key for key in file_state if not key.startswith(prefix))

    heads = _head_modules(full.meta)
    unknown = sorted(key for key in state if key not in full.keys)
    other_heads = [key for key in unknown if key.split(".")[0] in heads]
    unexpected = [key for key in unknown if key.split(".")[0] not in heads]
    not_in_backbone = sorted(key for key in state if key in full.keys and key not in to_backbone)
    mapped = {to_backbone[key]: value for key, value in state.items() if key in to_backbone}
    first = to_backbone.get(_first_conv(full.meta))
    if first in mapped and first in own:
        mapped[first] = adapt_rgb_weights(mapped[first], own[first], f"{path} ({first})")

    report = weight_differences(own, mapped)
    missing = [
        from_backbone.get(key, key)
        for key in report["missing"]
        if not key.endswith("num_batches_tracked")
    ]
    if missing or unexpected or report["mismatched"]:
        raise CheckpointError(
            _misfit_message(
                path, name, prefix, layout, full, own, to_backbone, mapped, missing, unexpected
            )
        )

    backbone.load_state_dict(mapped, strict=False)
    left_out = [
        (f"of the full {name}, not in its features model", not_in_backbone, not_in_backbone),
        ("of a head of the pretraining network", other_heads, other_heads),
        (f"outside the prefix '{prefix}'", outside, _by_module(outside)),
        ("buffers the model derives itself", dropped, _by_name(dropped)),
    ]
    log.info(
        "loaded %d tensors into the %s backbone from %s (%s layout%s); left out: %s",
        len(mapped),
        name,
        path,
        layout,
        f", under '{prefix}'" if prefix else "",
        "; ".join(
            f"{len(keys)} {what}: {preview(shown, limit=6)}"
            for what, keys, shown in left_out
            if keys
        )
        or "nothing",
    )


def adapt_rgb_weights(weight: torch.Tensor, own: torch.Tensor, where: str) -> torch.Tensor:
    """``weight``, a first conv of RGB weights (out, 3, k, k), fitted to ``own``'s band count
    as timm's ``adapt_input_conv`` does: summed for 1 band, else the RGB filters repeated over the
    bands (band b takes filter b mod 3) and scaled by 3 / bands, which keeps the activations'
    scale. Weights of another shape are returned as they are (the caller reports the misfit)."""
    bands = own.shape[1] if own.ndim == 4 else None
    if weight.ndim != 4 or weight.shape[1] != 3 or bands in (None, 3):
        return weight
    if weight.shape[0] != own.shape[0] or weight.shape[2:] != own.shape[2:]:
        return weight
    log.info("%s: RGB weights extended to %d input bands (timm's adapt_input_conv)", where, bands)
    return adapt_input_conv(bands, weight)


# --- reading -------------------------------------------------------------------------------------


def _read_tensors(path: Path) -> State:
    """The tensors of the file, keyed by their (possibly prefixed) names."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except Exception as error:  # safetensors raises its own error types for corrupt files
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    else:
        # DINO's and other research releases store their argparse options beside the weights
        with torch.serialization.safe_globals([argparse.Namespace]):
            checkpoint = read_checkpoint(path)
        if not isinstance(checkpoint, dict):
            raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict")
        # DINO saves {"teacher": state, "student": state, ...}: no tensors at the top level.
        state = extract_state_dict(checkpoint) or _flatten(checkpoint)
    if not state:
        raise CheckpointError(f"{path}: holds no tensors")
    return state


def _flatten(tree: dict, prefix: str = "") -> State:
    """The tensors of nested dicts under dotted names; other values are skipped."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, torch.Tensor):
            flat[f"{prefix}{key}"] = value
        elif isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
    return flat


def _by_module(keys: list[str]) -> list[str]:
    """``keys`` with those of a top-level module that holds several as one ``module.* (n)``."""
    groups = defaultdict(list)
    for key in keys:
        groups[key.split(".")[0]].append(key)
    return [
        group[0] if len(group) == 1 else f"{module}.* ({len(group)})"
        for module, group in groups.items()
    ]


def _by_name(keys: list[str]) -> list[str]:
    """The last component of ``keys`` with its count: ``relative_position_index (8)``."""
    return [
        f"{name} ({count})" for name, count in Counter(k.rsplit(".", 1)[-1] for k in keys).items()
    ]


# --- the full model and the features model -------------------------------------------------------


class _FullModel:
    """timm's full model of ``name``: its keys from a meta build (no memory), a real build only
    when a conversion needs actual tensors."""

    def __init__(self, name: str, model_kwargs: dict):
        self.name = name
        self.kwargs = {k: v for k, v in model_kwargs.items() if k not in _FEATURES_ONLY_KWARGS}
        self._real = None
        try:
            with torch.device("meta"):
                self.meta = timm.create_model(name, pretrained=False, **self.kwargs)
        except Exception:  # a model whose init computes on its tensors: the real one stands in
            self.meta = self.real()
        self.keys = set(self.meta.state_dict())
        module = sys.modules.get(type(self.meta).__module__)
        self.filter_fn = getattr(module, "checkpoint_filter_fn", None)
        self.module_name = type(self.meta).__module__

    def real(self) -> nn.Module:
        if self._real is None:
            self._real = timm.create_model(self.name, pretrained=False, **self.kwargs)
        return self._real


def _backbone_names(full_keys, own: State) -> dict[str, str]:
    """full-model key -> backbone key, for the keys the features model has.

    timm's FeatureListNet flattens the model's first-level Sequential (``layers.0`` ->
    ``layers_0``) and FeatureGetterNet keeps the model under ``model.``.
    """
    names = {}
    for key in full_keys:
        parts = key.split(".")
        flat = f"{parts[0]}_{'.'.join(parts[1:])}" if len(parts) > 2 else key
        for candidate in (key, flat, f"model.{key}"):
            if candidate in own:
                names[key] = candidate
                break
    return names


def _head_modules(model: nn.Module) -> set[str]:
    """The top-level modules of the classifier (``fc``, ``head``): another head there is left out."""
    classifier = model.pretrained_cfg.get("classifier") or ()
    classifier = (classifier,) if isinstance(classifier, str) else classifier
    return {name.split(".")[0] for name in classifier}


def _first_conv(model: nn.Module) -> str | None:
    first = model.pretrained_cfg.get("first_conv")
    first = first[0] if isinstance(first, (list, tuple)) and first else first
    return f"{first}.weight" if first else None


# --- layouts -------------------------------------------------------------------------------------


def _choose_prefix(
    file_state: State, full: _FullModel, from_backbone: dict[str, str]
) -> tuple[str, tuple[State, str, list[str]]]:
    """The key prefix (or "") whose keys, converted, match the most keys of the full model, with
    the converted state dict, its layout and the keys dropped."""
    groups = defaultdict(list)
    for key in file_state:
        groups[""].append(key)
        parts = key.split(".")
        for depth in range(1, len(parts)):
            groups[".".join(parts[:depth]) + "."].append(key)

    def rank(prefix: str, score: int):
        parts = set(prefix.split("."))
        return (score, bool(parts & _PREFERRED), not parts & _COPIES, -len(prefix), prefix)

    best, best_rank = "", None
    # A conversion at most doubles the keys (a qkv bias becomes q and v biases): a prefix holding
    # fewer than half the best score so far cannot beat it.
    for prefix in sorted(groups, key=lambda p: -len(groups[p])):
        if best_rank is not None and 2 * len(groups[prefix]) < best_rank[0]:
            break
        stripped = {key[len(prefix) :]: file_state[key] for key in groups[prefix]}
        converted, _, _ = _convert(stripped, full, from_backbone, allow_real=False)
        candidate = rank(prefix, sum(key in full.keys for key in converted))
        if best_rank is None or candidate > best_rank:
            best, best_rank = prefix, candidate
    stripped = {key[len(best) :]: file_state[key] for key in groups[best]}
    return best, _convert(stripped, full, from_backbone, allow_real=True)


def _convert(
    state: State, full: _FullModel, from_backbone: dict[str, str], allow_real: bool
) -> tuple[State, str, list[str]]:
    """``state`` under the full timm model's key names, its layout and the derived buffers dropped."""
    # A saved features model (``layers_0.``) back to the full model's names.
    state = {from_backbone.get(key, key): value for key, value in state.items()}
    layout, dropped = "timm", []
    if full.module_name.endswith("swin_transformer_v2") and any(
        key.startswith("features.0.0.") for key in state
    ):
        state, dropped = _from_torchvision_swin_v2(state)
        layout = "torchvision Swin-V2"
    if full.filter_fn is not None:
        filtered = _apply_filter(full, state, allow_real)
        if filtered is not None:
            if set(filtered) - set(state) and layout == "timm":
                layout = f"original release, converted by {full.module_name}.checkpoint_filter_fn"
            dropped += sorted(
                key for key in set(state) - set(filtered) if key.endswith(_DERIVED_BUFFERS)
            )
            state = filtered
    return state, layout, dropped


def _apply_filter(full: _FullModel, state: State, allow_real: bool) -> State | None:
    """timm's ``checkpoint_filter_fn`` of the model applied to ``state``; None where it fails.

    The filters read shapes from the model, which a meta model has; one that builds tensors from
    the model's own is retried with the real model.
    """
    models: list[Callable[[], nn.Module]] = [lambda: full.meta]
    if allow_real:
        models.append(full.real)
    for model in models:
        try:
            filtered = full.filter_fn(dict(state), model())
        except Exception:  # a filter may index keys that only its own layout has
            continue
        values = [v for v in filtered.values() if isinstance(v, torch.Tensor)]
        if not any(v.is_meta for v in values):
            return {k: v for k, v in filtered.items() if isinstance(v, torch.Tensor)}
    return None


def _from_torchvision_swin_v2(state: State) -> tuple[State, list[str]]:
    """torchvision's ``swin_v2_*`` keys as timm's ``swinv2_*`` ones, and the buffers dropped.

    torchvision's ``features`` is patch embedding, then stage blocks and patch merging in turn
    (``features.1`` = stage 0, ``features.2`` = merging into stage 1, ...); timm merges at the
    start of a stage. torchvision's qkv has one bias whose key third it zeroes in use; timm keeps
    ``q_bias`` and ``v_bias`` (and a zero key bias of its own).
    """
    out, dropped = {}, []
    for key, value in state.items():
        match = re.match(r"features\.(\d+)\.(.+)", key)
        if key.startswith("head."):
            out["head.fc." + key[len("head.") :]] = value
            continue
        if not match:  # the final ``norm`` keeps its name; anything else stays as it is
            out[key] = value
            continue
        index, rest = int(match.group(1)), match.group(2)
        if index == 0:
            rest = re.sub(r"^0\.", "proj.", re.sub(r"^2\.", "norm.", rest))
            out[f"patch_embed.{rest}"] = value
        elif index % 2 == 0:
            out[f"layers.{index // 2}.downsample.{rest}"] = value
        elif rest.endswith(_DERIVED_BUFFERS):
            dropped.append(key)
        else:
            stage = (index - 1) // 2
            block, _, rest = rest.partition(".")
            prefix = f"layers.{stage}.blocks.{block}."
            if rest == "attn.qkv.bias":
                q, _, v = value.chunk(3)
                out[prefix + "attn.q_bias"], out[prefix + "attn.v_bias"] = q, v
                continue
            rest = re.sub(r"^mlp\.0\.", "mlp.fc1.", re.sub(r"^mlp\.3\.", "mlp.fc2.", rest))
            out[prefix + rest] = value
    return out, dropped


# --- the error message ---------------------------------------------------------------------------


def _misfit_message(
    path, name, prefix, layout, full, own, to_backbone, mapped, missing, unexpected
) -> str:
    """What does not fit, in the full timm model's key names."""
    from_backbone = {feature: key for key, feature in to_backbone.items()}
    mismatched = weight_differences(own, mapped)["mismatched"]
    lines = [
        f"{path}: weights do not fit the timm backbone '{name}' "
        f"(read as {layout} layout{f' under the prefix {prefix!r}' if prefix else ''}):"
    ]
    if missing:
        lines.append(f"  missing (in the backbone, not in the file): {preview(missing, limit=8)}")
    if unexpected:
        lines.append(
            f"  unexpected (in the file, unknown to {name}): {preview(unexpected, limit=8)}"
        )
    if mismatched:
        shapes = [
            f"{from_backbone.get(key, key)} {tuple(mapped[key].shape)}, "
            f"expected {tuple(own[key].shape)}"
            for key in mismatched
        ]
        lines.append(f"  mismatched (the file's shape, the backbone's): {preview(shapes, limit=8)}")
    first = to_backbone.get(_first_conv(full.meta))
    if first in mismatched and mapped[first].ndim > 1 and own[first].ndim > 1:
        theirs, ours = mapped[first].shape[1], own[first].shape[1]
        if theirs != ours:
            lines.append(
                f"  the network takes {ours} input bands, the file's first conv {theirs}: build "
                f"the backbone with in_chans={theirs} for these weights"
            )
    if not mapped:
        lines.append("  none of its keys is the backbone's: are these weights of another network?")
    return "\n".join(lines)
