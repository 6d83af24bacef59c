"""FTUNetFormer: a timm Swin Transformer backbone with the UNetFormer decoder."""

from geoseg.models.checkpoint import register_model
from geoseg.models.decoder import EncoderDecoder

__all__ = ["FTUNetFormer"]


@register_model
class FTUNetFormer(EncoderDecoder):
    """Swin backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    Default backbone Swin-Base (window 12, 384) with a 256-channel decoder; the arguments are
    those of ``EncoderDecoder``.
    """

    default_backbone = "swin_base_patch4_window12_384"
    default_decode_channels = 256
    # Swin's four stages are strides 4, 8, 16, 32
    out_indices = (0, 1, 2, 3)
    # timm's Swin fixes the image size by default; these accept any multiple of 32. Its
    # features come out NHWC (timm reports it in `output_fmt`, which EncoderDecoder reads)
    backbone_defaults = {"strict_img_size": False, "dynamic_img_size": True}
