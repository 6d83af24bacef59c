"""SegFormer's all-MLP decoder (Xie et al., NeurIPS 2021) on any hierarchical timm backbone."""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import Unpack

from geoseg.models.decoder import ConvBNReLU
from geoseg.models.encoder_decoder import EncoderDecoder, EncoderDecoderArguments
from geoseg.models.record import register_model

__all__ = ["SegFormer", "SegFormerHead"]


class SegFormerHead(nn.Module):
    """Features at strides 4..32 -> logits (B, K, H/4, W/4), in the paper's four steps.

    1. each stage's C_i channels projected to a common width E by a per-pixel linear layer;
    2. every projection upsampled (bilinear) to the stride-4 map;
    3. the four concatenated (deepest first, as the authors' code) and fused by a 1x1 conv + BN
       + ReLU to E channels;
    4. dropout and a per-pixel linear classifier.
    """

    aux_head = None

    def __init__(
        self, encoder_channels: Sequence[int], *, num_classes: int, embed_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.projections = nn.ModuleList(nn.Conv2d(c, embed_dim, 1) for c in encoder_channels)
        self.fuse = ConvBNReLU(len(encoder_channels) * embed_dim, embed_dim, 1, nn.ReLU)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(embed_dim, num_classes, 1)

    def forward(self, features: Sequence[torch.Tensor], with_aux: bool = False) -> torch.Tensor:
        if with_aux:
            raise RuntimeError("auxiliary logits requested but SegFormer has no aux_head")
        size = features[0].shape[-2:]
        projected = [
            F.interpolate(project(f), size=size, mode="bilinear", align_corners=False)
            for project, f in zip(self.projections, features, strict=True)
        ]
        fused = self.fuse(torch.cat(projected[::-1], dim=1))
        return self.classifier(self.dropout(fused))


@register_model
class SegFormer(EncoderDecoder):
    """Backbone + SegFormer head: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    Defaults: PVT-v2-B2 (timm's closest relative of SegFormer's MiT-B2: overlapping patch
    embeddings, spatial-reduction attention, convolutional feed-forward), a 768-wide decoder as
    SegFormer-B2's, dropout 0.1. ``embed_dim`` is the decoder width (256 for the B0/B1 sizes).
    Arguments left as None take the defaults. ``**base`` are the arguments every network takes
    (``EncoderDecoderArguments``: ``num_classes``, ``backbone``, ``pretrained``,
    ``backbone_kwargs``, ``normalization``, ``in_chans``, ``raster``), described and defaulted by
    ``EncoderDecoder``.
    """

    defaults = dict(backbone="pvt_v2_b2", embed_dim=768, dropout=0.1)

    def __init__(
        self,
        *,
        embed_dim: int | None = None,
        dropout: float | None = None,
        **base: Unpack[EncoderDecoderArguments],
    ) -> None:
        super().__init__(**base, embed_dim=embed_dim, dropout=dropout)

    def build_decoder(
        self, encoder_channels: list[int], *, num_classes: int, **args: Any
    ) -> nn.Module:
        return SegFormerHead(encoder_channels, num_classes=num_classes, **args)
