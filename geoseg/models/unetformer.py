"""UNetFormer: a timm CNN backbone (ResNet-18 by default) with the UNetFormer decoder."""

from geoseg.models.checkpoint import register_model
from geoseg.models.decoder import EncoderDecoder

__all__ = ["UNetFormer"]


@register_model
class UNetFormer(EncoderDecoder):
    """CNN backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    Default backbone ResNet-18 with a 64-channel decoder; the arguments are those of
    ``EncoderDecoder``.
    """

    default_backbone = "resnet18"
    default_decode_channels = 64
    # timm CNN feature index 0 is the stride-2 stem; 1..4 are the stride 4..32 stages
    out_indices = (1, 2, 3, 4)
