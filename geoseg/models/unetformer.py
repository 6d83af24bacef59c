"""UNetFormer: a timm CNN backbone (ResNet-18 by default) with the UNetFormer decoder."""

from __future__ import annotations

from geoseg.models.decoder import EncoderDecoder

__all__ = ["UNetFormer"]


class UNetFormer(EncoderDecoder):
    """CNN backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    In training mode with `aux_head` the forward returns (logits, aux_logits), both (B, K, H, W).
    `pretrained` is False, True (timm's ImageNet weights) or a local weights file of the backbone.
    """

    # timm CNN feature index 0 is the stride-2 stem; 1..4 are the stride 4..32 stages
    out_indices = (1, 2, 3, 4)

    def __init__(
        self,
        *,
        num_classes: int = 6,
        backbone: str = "resnet18",
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        decode_channels: int = 64,
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
