"""FT-UNetFormer: a Swin Transformer backbone with the UNetFormer decoder (Wang et al., 2022)."""

from torch import nn

from geoseg.models.checkpoint import register_model
from geoseg.models.decoder import EncoderDecoder
from geoseg.models.swin import SWIN_PRESETS, SwinTransformer, load_swin_weights

__all__ = ["FTUNetFormer"]


@register_model
class FTUNetFormer(EncoderDecoder):
    """Swin backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    The published network by default: Swin-Base window 7, a 256-channel decoder with 16 heads,
    dropout 0.2, no auxiliary head. ``backbone`` names a Swin preset (timm's model names, e.g.
    ``swin_base_patch4_window7_224``, with or without a weights tag); ``backbone_kwargs`` override its embed_dim, depths,
    num_heads, window_size or drop_path_rate. ``pretrained`` is True (timm's ImageNet weights of
    that model, downloaded once) or a local file: a timm or original Swin state dict, or GeoSeg's
    ``stseg_base.pth``. The other arguments are those of ``EncoderDecoder``.
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
