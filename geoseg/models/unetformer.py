"""UNetFormer: any hierarchical timm backbone (ResNet-18 by default) with the UNetFormer decoder."""

from typing import Any

from torch import nn
from typing_extensions import Unpack

from geoseg.models.decoder import UNetFormerDecoder
from geoseg.models.encoder_decoder import EncoderDecoder, EncoderDecoderArguments
from geoseg.models.record import register_model

__all__ = ["UNetFormer"]


@register_model
class UNetFormer(EncoderDecoder):
    """Backbone + UNetFormer decoder: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    The published network by default: ResNet-18, a 64-channel decoder with 8 heads and windows
    of 8, dropout 0.1 and the auxiliary head. ``backbone`` is any hierarchical timm model (its
    stride 4..32 features are found from its ``feature_info``): ResNet, ConvNeXt, EfficientNet,
    RegNet, PVT-v2, Swin, Swin-v2, ... Arguments left as None take the defaults. ``**base`` are
    the arguments every network takes (``EncoderDecoderArguments``: ``num_classes``, ``backbone``,
    ``pretrained``, ``backbone_kwargs``, ``normalization``, ``in_chans``, ``raster``), described
    and defaulted by ``EncoderDecoder``.
    """

    defaults = dict(
        backbone="resnet18", decode_channels=64, num_heads=8, dropout=0.1, aux_head=True
    )
    # FT-UNetFormer's variant of the decoder (3x3 skip projections, BN after pointwise convs)
    fine_tuned_layout = False

    def __init__(
        self,
        *,
        decode_channels: int | None = None,
        window_size: int = 8,
        num_heads: int | None = None,
        dropout: float | None = None,
        aux_head: bool | None = None,
        **base: Unpack[EncoderDecoderArguments],
    ) -> None:
        super().__init__(
            **base,
            decode_channels=decode_channels,
            window_size=window_size,
            num_heads=num_heads,
            dropout=dropout,
            aux_head=aux_head,
        )

    def build_decoder(
        self, encoder_channels: list[int], *, num_classes: int, **args: Any
    ) -> nn.Module:
        return UNetFormerDecoder(
            encoder_channels,
            num_classes=num_classes,
            fine_tuned_layout=self.fine_tuned_layout,
            **args,
        )
