"""FT-UNetFormer: a Swin Transformer backbone with the UNetFormer decoder (Wang et al., 2022)."""

import logging
import os
from pathlib import Path

import torch
from torch import nn

from geoseg.errors import CheckpointError, preview
from geoseg.models.backbone_weights import adapt_rgb_weights
from geoseg.models.pretrained import create_pretrained
from geoseg.models.record import register_model
from geoseg.models.swin import SWIN_PRESETS, SwinTransformer, swin_state_dict
from geoseg.models.unetformer import UNetFormer
from geoseg.models.weight_files import extract_state_dict, read_checkpoint, weight_differences

__all__ = ["FTUNetFormer", "load_swin_weights"]

log = logging.getLogger(__name__)


@register_model
class FTUNetFormer(UNetFormer):
    """Swin backbone + UNetFormer decoder: image (B, C, H, W) -> logits (B, K, H, W), any H, W.

    The published network by default: Swin-Base window 7, a 256-channel decoder with 16 heads,
    dropout 0.2, no auxiliary head. ``backbone`` names a Swin preset (timm's model names, e.g.
    ``swin_base_patch4_window7_224``, with or without a weights tag); ``backbone_kwargs`` override
    its embed_dim, depths, num_heads, window_size or drop_path_rate. ``pretrained`` is True (timm's
    ImageNet weights of that model, downloaded once) or a local file: a timm or original Swin state
    dict, or GeoSeg's ``stseg_base.pth``. The other arguments are those of ``UNetFormer``.
    """

    defaults = dict(
        backbone="swin_base_patch4_window7_224",
        decode_channels=256,
        num_heads=16,
        dropout=0.2,
        aux_head=False,
    )
    fine_tuned_layout = True

    def build_backbone(
        self, name: str, pretrained: bool | str, kwargs: dict
    ) -> tuple[nn.Module, list[int], list[int]]:
        architecture = name.split(".")[0]  # timm names may carry a weights tag: ".ms_in22k"
        if architecture not in SWIN_PRESETS:
            raise ValueError(
                f"FTUNetFormer backbone {name!r}: expected a Swin, one of {sorted(SWIN_PRESETS)}; "
                "other timm backbones go with UNetFormer"
            )
        backbone = SwinTransformer(**{**SWIN_PRESETS[architecture], **kwargs})
        if pretrained:
            load_swin_weights(backbone, pretrained, name)
        return backbone, backbone.channels, list(backbone.reductions)


def load_swin_weights(
    backbone: SwinTransformer, source: bool | str | os.PathLike, name: str
) -> None:
    """Load ``source`` into ``backbone``: True for timm's weights of model ``name``, or a file.

    Every weight of the file must fit; only the per-stage output norms may be absent (ImageNet
    classifiers have none: they start as identity-like LayerNorms, as in mmsegmentation).
    """
    if source is True:
        state, where = create_pretrained(name).state_dict(), f"timm {name}"
    else:
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone weights file not found: {str(path)!r}; expected a Swin state dict "
                "(timm, original or mmsegmentation layout, e.g. GeoSeg's stseg_base.pth)"
            )
        state, where = _read_state_dict(path), str(path)
    mapped, left_out = swin_state_dict(state)
    own = backbone.state_dict()
    first = "patch_embed.proj.weight"
    if first in mapped:
        mapped[first] = adapt_rgb_weights(mapped[first], own[first], f"{where} ({first})")
    differences = weight_differences(own, mapped)
    mismatched = [
        f"{key} {tuple(mapped[key].shape)}, expected {tuple(own[key].shape)}"
        for key in differences["mismatched"]
    ]
    missing = [k for k in differences["missing"] if not k.startswith("output_norms.")]
    problems = (
        ("shape differs", mismatched),
        ("unknown keys", differences["unexpected"]),
        ("missing keys", missing),
    )
    if any(keys for _, keys in problems):
        raise CheckpointError(
            f"{where}: not the weights of this Swin (embed {backbone.channels[0]}); "
            + "; ".join(f"{kind}: {preview(keys, limit=4)}" for kind, keys in problems if keys)
        )
    backbone.load_state_dict(mapped, strict=False)
    log.info(
        "Swin backbone initialised from %s; left out: %s%s",
        where,
        preview(left_out, limit=6) if left_out else "nothing",
        "" if any(k.startswith("output_norms.") for k in mapped) else "; output norms start fresh",
    )


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file, or of any checkpoint ``extract_state_dict`` reads
    (a plain state dict, or one under ``state_dict``/``model`` as Lightning, mmsegmentation and
    the original Swin releases write it)."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except Exception as error:  # safetensors raises its own types for corrupt files
            raise CheckpointError(f"{path}: not a readable safetensors file ({error})") from error
    return extract_state_dict(read_checkpoint(path))
