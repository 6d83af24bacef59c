"""UPerNet (Xiao et al., ECCV 2018): pyramid pooling on the deepest stage and a feature pyramid
over all four, on any hierarchical timm backbone; an FCN auxiliary head for training."""

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from typing_extensions import Unpack

from geoseg.errors import TrainingError
from geoseg.models.decoder import ConvBNReLU
from geoseg.models.encoder_decoder import EncoderDecoder, EncoderDecoderArguments
from geoseg.models.record import register_model

__all__ = ["PyramidPooling", "UPerNet", "UPerNetHead"]


def _resize(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class PyramidPooling(nn.Module):
    """PSPNet's pyramid pooling: (B, C, h, w) -> (B, C + len(scales) * channels, h, w).

    For each scale s, average-pool to s x s bins, 1x1 conv + BN + ReLU to ``channels``, upsample
    back (bilinear); concatenated after the input.
    """

    def __init__(self, in_channels: int, channels: int, scales: Sequence[int]) -> None:
        super().__init__()
        self.scales = tuple(scales)
        self.branches = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1, nn.ReLU) for _ in self.scales
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] == 1 and 1 in self.scales:
            # torch's own error here ("Expected more than 1 value per channel") names no cause
            raise TrainingError(
                "UPerNet's pyramid pooling normalises its 1x1 pooled map over the batch: train "
                "with at least 2 images per device (batch_size >= 2, drop_last)"
            )
        size = x.shape[-2:]
        pooled = [
            _resize(branch(F.adaptive_avg_pool2d(x, scale)), size)
            for scale, branch in zip(self.scales, self.branches, strict=True)
        ]
        return torch.cat([x, *pooled], dim=1)


class UPerNetHead(nn.Module):
    """Features at strides 4..32 -> logits (B, K, H/4, W/4) [, auxiliary logits at stride 16].

    Pyramid pooling + 3x3 conv on the stride-32 map; 1x1 lateral convs on the others; top-down
    sums (each map plus its upsampled coarser neighbour); a 3x3 conv per level; all four
    upsampled to stride 4, concatenated, fused by a 3x3 conv; dropout and a 1x1 classifier. All
    convs are conv + BN + ReLU, as in mmsegmentation's UPerHead. The auxiliary FCN head (3x3 conv
    + BN + ReLU, dropout, 1x1 classifier) reads the stride-16 backbone features.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        *,
        num_classes: int,
        channels: int,
        pool_scales: Sequence[int],
        dropout: float,
        aux_head: bool,
        aux_channels: int,
    ) -> None:
        super().__init__()
        *shallow, deepest = encoder_channels
        self.pyramid_pooling = PyramidPooling(deepest, channels, pool_scales)
        self.bottleneck = ConvBNReLU(deepest + len(pool_scales) * channels, channels, 3, nn.ReLU)
        self.laterals = nn.ModuleList(ConvBNReLU(c, channels, 1, nn.ReLU) for c in shallow)
        self.fpn_convs = nn.ModuleList(ConvBNReLU(channels, channels, 3, nn.ReLU) for _ in shallow)
        self.fuse = ConvBNReLU(len(encoder_channels) * channels, channels, 3, nn.ReLU)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.aux_head = (
            nn.Sequential(
                ConvBNReLU(encoder_channels[2], aux_channels, 3, nn.ReLU),
                nn.Dropout2d(dropout),
                nn.Conv2d(aux_channels, num_classes, 1),
            )
            if aux_head
            else None
        )

    def forward(
        self, features: Sequence[torch.Tensor], with_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        *shallow, deepest = features
        levels = [lateral(f) for lateral, f in zip(self.laterals, shallow, strict=True)]
        levels.append(self.bottleneck(self.pyramid_pooling(deepest)))
        for i in range(len(levels) - 1, 0, -1):  # top-down: coarse context into finer maps
            levels[i - 1] = levels[i - 1] + _resize(levels[i], levels[i - 1].shape[-2:])
        outputs = [conv(level) for conv, level in zip(self.fpn_convs, levels, strict=False)]
        outputs.append(levels[-1])
        size = outputs[0].shape[-2:]
        fused = self.fuse(torch.cat([outputs[0], *(_resize(o, size) for o in outputs[1:])], 1))
        logits = self.classifier(self.dropout(fused))
        if not with_aux:
            return logits
        if self.aux_head is None:
            raise RuntimeError("auxiliary logits requested but the decoder has no aux_head")
        return logits, self.aux_head(features[2])


@register_model
class UPerNet(EncoderDecoder):
    """Backbone + UPerNet head: image (B, 3, H, W) -> logits (B, K, H, W), any H, W.

    Defaults as mmsegmentation's UPerNet baselines: ConvNeXt-Tiny, 512 channels, pooling scales
    1, 2, 3, 6, dropout 0.1, and the auxiliary FCN head (256 channels) on the stride-16 features,
    used when the loss weighs it (``aux_weight``). Arguments left as None take the defaults.
    ``**base`` are the arguments every network takes (``EncoderDecoderArguments``:
    ``num_classes``, ``backbone``, ``pretrained``, ``backbone_kwargs``, ``normalization``,
    ``in_chans``, ``raster``), described and defaulted by ``EncoderDecoder``.
    """

    defaults = dict(
        backbone="convnext_tiny",
        channels=512,
        pool_scales=(1, 2, 3, 6),
        dropout=0.1,
        aux_head=True,
        aux_channels=256,
    )

    def __init__(
        self,
        *,
        channels: int | None = None,
        pool_scales: Sequence[int] | None = None,
        dropout: float | None = None,
        aux_head: bool | None = None,
        aux_channels: int | None = None,
        **base: Unpack[EncoderDecoderArguments],
    ) -> None:
        super().__init__(
            **base,
            channels=channels,
            pool_scales=pool_scales,
            dropout=dropout,
            aux_head=aux_head,
            aux_channels=aux_channels,
        )

    def build_decoder(
        self, encoder_channels: list[int], *, num_classes: int, **args: Any
    ) -> nn.Module:
        return UPerNetHead(encoder_channels, num_classes=num_classes, **args)
