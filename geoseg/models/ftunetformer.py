"""FTUNetFormer: a timm Swin Transformer backbone with the UNetFormer decoder."""

from __future__ import annotations

from geoseg.models.decoder import EncoderDecoder

__all__ = ["FTUNetFormer"]


class FTUNetFormer(EncoderDecoder):
    """Swin backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    In training mode with `aux_head` the forward returns (logits, aux_logits), both (B, K, H, W).
    `pretrained` is False, True (timm's ImageNet weights) or a local weights file of the backbone.
    """

    # Swin's four stages are strides 4, 8, 16, 32
    out_indices = (0, 1, 2, 3)
    # timm's Swin fixes the image size by default; these accept any multiple of 32. Its
    # features come out NHWC (timm reports it in `output_fmt`, which EncoderDecoder reads)
    backbone_defaults = {"strict_img_size": False, "dynamic_img_size": True}

    def __init__(
        self,
        *,
        num_classes: int = 6,
        backbone: str = "swin_base_patch4_window12_384",
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        decode_channels: int = 256,
        window_size: int = 8,
        dropout: float = 0.1,
        aux_head: bool = True,
    ) -> None:
        super().__init__(
            num_classes=num_classes,
            backbone=backbone,
            pretrained=pretrained,
            backbone_kwargs=backbone_kwargs,
            decode_channels=decode_channels,
            window_size=window_size,
            dropout=dropout,
            aux_head=aux_head,
        )
