"""Weights in the published layouts (GeoSeg, Swin releases) under this project's key names.

GeoSeg's FT-UNetFormer and UNetFormer hold the same layers as ``FTUNetFormer`` and ``UNetFormer``
here; only some names differ (``b4`` is ``block4``, ``p3`` is ``fuse3``, ``p1`` is ``refine``,
...), and GeoSeg keeps buffers this project derives (``relative_position_index``). Swin weights
come in the timm, original or mmsegmentation layout (see ``swin_state_dict``).
"""

from __future__ import annotations

import math
import re

import torch

from geoseg.models.swin import SWIN_PRESETS, swin_state_dict

__all__ = ["from_published_layouts", "geoseg_model_arguments", "is_geoseg_state", "is_swin_state"]

# GeoSeg decoder key -> this project's, applied in order (a key may pass several)
GEOSEG_DECODER_RENAMES = (
    (r"^decoder\.b([234])\.", r"decoder.block\1."),
    (r"^decoder\.p([23])\.pre_conv\.", r"decoder.fuse\1.skip_proj."),
    (r"^decoder\.p([23])\.", r"decoder.fuse\1."),
    (r"^decoder\.p1\.pre_conv\.", "decoder.refine.fuse.skip_proj."),
    (r"^decoder\.p1\.(weights$|post_conv\.)", r"decoder.refine.fuse.\1"),
    (r"^decoder\.p1\.pa\.", "decoder.refine.spatial_attention."),
    (r"^decoder\.p1\.ca\.(\d)\.0\.", r"decoder.refine.channel_attention.\1."),
    (r"^decoder\.p1\.", "decoder.refine."),
    (r"\.attn\.local1\.", ".attn.local_3x3."),
    (r"\.attn\.local2\.", ".attn.local_1x1."),
    (r"^(decoder\.block\d\.attn)\.qkv\.0\.", r"\1.qkv."),
    (r"^decoder\.segmentation_head\.2\.0\.", "decoder.head.2."),
    (r"^decoder\.segmentation_head\.", "decoder.head."),
    (r"^decoder\.aux_head\.conv\.", "decoder.aux_head.0."),
    (r"^decoder\.aux_head\.conv_out\.0\.", "decoder.aux_head.2."),
)


# the heads of an mmsegmentation checkpoint, which this project's networks do not have
MMSEG_HEADS = ("decode_head.", "auxiliary_head.")


def is_swin_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` holds a Swin under ``backbone.`` (GeoSeg's FT-UNetFormer)."""
    return "backbone.layers.0.blocks.0.attn.relative_position_bias_table" in state


def is_geoseg_state(state: dict[str, torch.Tensor]) -> bool:
    """Whether ``state`` (``net.`` already stripped) has GeoSeg's decoder key names."""
    return any(key.startswith(("decoder.b4.", "decoder.segmentation_head.")) for key in state)


def from_published_layouts(
    state: dict[str, torch.Tensor], swin_backbone: bool
) -> tuple[dict[str, torch.Tensor], list[str]]:
    """``state`` under this project's key names, and the keys left out (for the caller's report).

    Renames GeoSeg decoder keys, converts the backbone keys of a network with a Swin backbone
    (``swin_backbone``) from any known layout (prefixed ``backbone.`` or a bare Swin state dict)
    and leaves out derived buffers and the heads of an mmsegmentation checkpoint (``decode_head``,
    ``auxiliary_head``: GeoSeg's ``stseg_base.pth``). Any other key passes unchanged, so this
    project's own checkpoints are untouched.
    """
    if swin_backbone and "patch_embed.proj.weight" in state:  # a bare Swin state dict
        mapped, left_out = swin_state_dict(state)
        return {f"backbone.{k}": v for k, v in mapped.items()}, left_out
    mapped, left_out = {}, []
    backbone = {k: v for k, v in state.items() if k.startswith("backbone.")}
    if swin_backbone:
        backbone, left_out = swin_state_dict(backbone)
        backbone = {f"backbone.{k}": v for k, v in backbone.items()}
    mapped.update(backbone)
    for key, value in state.items():
        if key.startswith("backbone."):
            continue
        if key.startswith(MMSEG_HEADS) or key.endswith("relative_position_index"):
            left_out.append(key)
            continue
        if key.startswith("decoder."):
            for pattern, replacement in GEOSEG_DECODER_RENAMES:
                key = re.sub(pattern, replacement, key)
        mapped[key] = value
    return mapped, left_out


def geoseg_model_arguments(state: dict[str, torch.Tensor], backbone: str) -> tuple[str, dict]:
    """(model class name, constructor arguments) of the network whose weights are ``state``.

    ``state`` is under this project's key names (``from_published_layouts``). Everything is read
    from the weights' shapes except ``backbone`` for a UNetFormer (a timm CNN name; ResNet-18 in
    GeoSeg's configs); dropout takes the published defaults.
    """
    try:
        table = state["decoder.block4.attn.relative_position_bias_table"]
        kwargs = dict(
            num_classes=state["decoder.head.2.weight"].shape[0],
            decode_channels=state["decoder.pre_conv.0.weight"].shape[0],
            num_heads=table.shape[1],
            window_size=_window_size(table),
            aux_head=any(key.startswith("decoder.aux_head.") for key in state),
        )
        if not is_swin_state(state):
            return "UNetFormer", dict(kwargs, backbone=backbone)
        depths = [
            len({k.split(".")[4] for k in state if k.startswith(f"backbone.layers.{i}.blocks.")})
            for i in range(4)
        ]
        tables = [
            state[f"backbone.layers.{i}.blocks.0.attn.relative_position_bias_table"]
            for i in range(4)
        ]
        swin = dict(
            embed_dim=state["backbone.patch_embed.proj.weight"].shape[0],
            depths=depths,
            num_heads=[t.shape[1] for t in tables],
            window_size=_window_size(tables[0]),
        )
    except KeyError as error:
        raise KeyError(f"not an FT-UNetFormer or UNetFormer: it has no weight {error}") from None
    for name, preset in SWIN_PRESETS.items():
        if {k: list(v) if isinstance(v, tuple) else v for k, v in preset.items()} == swin:
            return "FTUNetFormer", dict(kwargs, backbone=name)
    return "FTUNetFormer", dict(kwargs, backbone_kwargs=swin)


def _window_size(relative_position_bias_table: torch.Tensor) -> int:
    """The window size w of a ((2w - 1)^2, heads) relative position bias table."""
    return (math.isqrt(relative_position_bias_table.shape[0]) + 1) // 2
