"""UNetFormer: a timm CNN backbone (ResNet-18 by default) with the UNetFormer decoder."""

from geoseg.models.checkpoint import register_model
from geoseg.models.decoder import EncoderDecoder

__all__ = ["UNetFormer"]


@register_model
class UNetFormer(EncoderDecoder):
    """CNN backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    The published network by default: ResNet-18, a 64-channel decoder with 8 heads, dropout 0.1
    and the auxiliary head. The arguments are those of ``EncoderDecoder``.
    """

    defaults = dict(
        backbone="resnet18", decode_channels=64, num_heads=8, dropout=0.1, aux_head=True
    )
    # timm CNN feature index 0 is the stride-2 stem; 1..4 are the stride 4..32 stages
    out_indices = (1, 2, 3, 4)
