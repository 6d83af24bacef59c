"""The encoder-decoder base every network here builds on, and the timm backbones it uses.

`EncoderDecoder` owns what all the networks share: the input normalisation, a hierarchical
backbone whose stride 4, 8, 16 and 32 features it picks from the backbone's own ``feature_info``,
any input size with logits at the input size, the auxiliary head switch and ``init_args``, the
record from which a checkpoint rebuilds the network. Subclasses add a decoder (``build_decoder``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from geoseg.bands import RasterInput, network_raster_input
from geoseg.classes import IMAGENET_NORMALIZATION, NUM_CLASSES
from geoseg.errors import ConfigError
from geoseg.models.backbone_weights import load_backbone_weights
from geoseg.models.common import as_plain, pad_to_multiple
from geoseg.models.input import InputNormalization, check_normalization
from geoseg.models.pretrained import create_pretrained

__all__ = [
    "FEATURE_STRIDES",
    "EncoderDecoder",
    "EncoderDecoderArguments",
    "create_backbone",
    "stride_feature_indices",
]

# the strides of the four feature maps every decoder here takes
FEATURE_STRIDES = (4, 8, 16, 32)


def feature_layout(device: torch.device) -> torch.memory_format:
    """The memory layout in which the decoders' convolutions are fastest on ``device``.

    The layout of a convolution's input picks its kernel. GPUs: channels-last (their tensor-core
    convolutions work on NHWC). CPUs: contiguous NCHW, faster there for the same step (measured
    by benchmarks/step1_throughput.py; figures in docs/benchmarks.md). Swin backbones compute
    channels-last, so on a CPU their features are copied once; the copy costs far less than it
    saves.
    """
    return torch.channels_last if device.type == "cuda" else torch.contiguous_format


def create_backbone(
    name: str, *, pretrained: bool | str | os.PathLike = False, **kwargs: Any
) -> nn.Module:
    """A timm ``features_only`` model; ``pretrained`` is True (timm's weights, downloaded once) or
    a local weights file (timm's layout or a remote-sensing release: see ``backbone_weights``).

    Transformer backbones are built for any input size (timm's ``dynamic_img_size``), as the
    decoders here run on tiles of any size.
    """
    from_timm = pretrained is True
    try:
        kwargs = {"dynamic_img_size": True, **kwargs}
        backbone = create_pretrained(name, features_only=True, pretrained=from_timm, **kwargs)
    except TypeError as error:  # CNNs take no dynamic_img_size: any size works for them
        if "dynamic_img_size" not in str(error):
            raise
        kwargs.pop("dynamic_img_size")
        backbone = create_pretrained(name, features_only=True, pretrained=from_timm, **kwargs)
    if pretrained and not from_timm:
        load_backbone_weights(backbone, name, pretrained, kwargs)
    return backbone


def stride_feature_indices(reductions: Sequence[int], backbone: str) -> list[int]:
    """Indices of the features at strides 4, 8, 16 and 32 (the deepest one where a stride repeats).

    Raises a ConfigError (a ValueError) naming the backbone and its strides when one of them is missing.
    """
    reductions = list(reductions)
    if not set(FEATURE_STRIDES) <= set(reductions):
        raise ConfigError(
            f"backbone {backbone!r} gives feature strides {reductions}; the decoders here need "
            f"features at strides {list(FEATURE_STRIDES)}: a hierarchical backbone (ResNet, "
            "ConvNeXt, EfficientNet, RegNet, PVT-v2, Swin, ...)"
        )
    return [len(reductions) - 1 - reductions[::-1].index(s) for s in FEATURE_STRIDES]


def backbone_rounds_up(features, in_chans: int = 3, side: int = 61) -> bool:
    """Whether ``features`` (image -> maps at strides 4..32) rounds sizes up to whole strides,
    as the published networks' backbones do (ResNet's padded strided convs, a Swin that pads to
    whole patches): tried on one ``side`` x ``side`` image in eval mode, nothing kept.

    Then inputs within 3 px of a multiple of 32 run unpadded, as in the published networks (see
    ``EncoderDecoder._forward``); backbones that round down (ConvNeXt's patchify stem) are padded.
    """
    module = features.__self__
    device = next(module.parameters()).device
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            maps = features(torch.zeros(1, in_chans, side, side, device=device))
        return [tuple(m.shape[-2:]) for m in maps] == [
            (-(-side // s),) * 2 for s in FEATURE_STRIDES
        ]
    except (RuntimeError, AssertionError):  # cannot take such a size (timm asserts): padded
        return False
    finally:
        module.train(was_training)


class EncoderDecoderArguments(TypedDict, total=False):
    """The arguments every network takes, as ``EncoderDecoder`` does (its defaults; see there).

    A network takes them as ``**base: Unpack[EncoderDecoderArguments]`` (PEP 692) and passes them
    on; the checkpoint record reads this to know the network's arguments (``geoseg.models.record``).
    """

    num_classes: int
    backbone: str | None
    pretrained: bool | str
    backbone_kwargs: dict | None
    normalization: dict | None
    in_chans: int | None
    raster: RasterInput | dict | None


class EncoderDecoder(nn.Module):
    """Backbone -> decoder, any input size: image (B, C, H, W) -> logits (B, K, H, W).

    The input is on its native scale (0-255 RGB, raw values of 16-bit bands): the network applies
    its own ``normalization`` (mean/std per band, ImageNet's by default; None for inputs normalised
    beforehand). ``raster`` (a ``RasterInput``) makes it read other bands than 8-bit RGB: their
    number is ``in_chans`` (3 without one), and its scaling comes before the normalisation.
    ``in_chans`` alone (not 3) means bands 1..in_chans of 8-bit rasters.
    ``pretrained`` is False, True (the backbone's published ImageNet weights, through timm) or a
    local weights file of the backbone (RGB weights are extended to other band counts as timm's
    ``adapt_input_conv`` does); ``backbone_kwargs`` go to the backbone's constructor.

    Subclasses take their decoder's arguments and pass them on with these (``**base``, see
    ``EncoderDecoderArguments``), set ``defaults`` (arguments left as None take these) and
    implement ``build_decoder``: a module called as ``decoder(features, with_aux)`` on the four
    NCHW feature maps at strides 4..32, returning logits at any stride (and the auxiliary logits
    with ``with_aux``), with an ``aux_head`` attribute (None without one). They may override
    ``build_backbone`` (a timm ``features_only`` model here).

    ``init_args`` holds the constructor arguments as plain values, ``pretrained`` recorded as
    False, so ``type(net)(**net.init_args)`` rebuilds the architecture for a checkpoint's weights.
    ``architecture_version`` names the layer layout; checkpoints record it.
    """

    # 1: this project's own UNetFormer decoder (before it followed the published networks)
    architecture_version = 2
    defaults: dict[str, Any]

    def __init__(
        self,
        *,
        num_classes: int = NUM_CLASSES,
        backbone: str | None = None,
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        normalization: dict | None = IMAGENET_NORMALIZATION,
        in_chans: int | None = None,
        raster: RasterInput | dict | None = None,
        **decoder_args: Any,
    ) -> None:
        super().__init__()
        self.raster = network_raster_input(in_chans, raster)
        self.in_chans = 3 if self.raster is None else self.raster.in_chans
        backbone = backbone or self.defaults["backbone"]
        decoder_args = {
            key: self.defaults[key] if value is None else value
            for key, value in decoder_args.items()
        }
        backbone_kwargs = dict(backbone_kwargs or {})
        if "in_chans" in backbone_kwargs:
            raise ConfigError(
                f"backbone_kwargs={backbone_kwargs!r}: set in_chans (or raster) on the network, "
                "which passes it to the backbone"
            )
        normalization = check_normalization(normalization)
        if normalization is not None and len(normalization["mean"]) != self.in_chans:
            raise ConfigError(
                f"normalization has {len(normalization['mean'])} values per statistic; the "
                f"network reads {self.in_chans} bands: give one mean and std per band "
                "(BandStatistics.normalization computes them on the Train split)"
            )
        scaled = self.raster is not None and (
            self.raster.scaling is not None or self.raster.dtype != "uint8"
        )
        if scaled and normalization == check_normalization(IMAGENET_NORMALIZATION):
            raise ConfigError(
                f"normalization is ImageNet's, on the 0-255 scale of 8-bit RGB, but the network "
                f"reads {self.raster.describe()} with scaling {self.raster.scaling}: give the "
                "mean and std of the scaled bands (BandStatistics.normalization), or None"
            )
        self.init_args: dict[str, Any] = as_plain(
            dict(
                num_classes=num_classes,
                backbone=backbone,
                pretrained=False,
                backbone_kwargs=backbone_kwargs,
                normalization=normalization,
                # recorded for other bands than RGB only: RGB records stay as they were
                **({} if self.raster is None else {"raster": self.raster.to_dict()}),
                **decoder_args,
            ),
            "init_args",
        )
        self.input_normalization = InputNormalization(
            normalization, None if self.raster is None else self.raster.scaling
        )
        self.backbone, channels, reductions = self.build_backbone(
            backbone, pretrained, {**backbone_kwargs, "in_chans": self.in_chans}
        )
        self.feature_indices = stride_feature_indices(reductions, backbone)
        # timm's Swin backbones return NHWC maps; the decoders take NCHW
        self.features_channels_last = getattr(self.backbone, "output_fmt", "NCHW") == "NHWC"
        # None: the layout ``feature_layout`` picks for the input's device
        self.feature_layout: torch.memory_format | None = None
        self.size_divisor = max(FEATURE_STRIDES)
        self.backbone_rounds_up = backbone_rounds_up(self.features, self.in_chans)
        self.decoder = self.build_decoder(
            [channels[i] for i in self.feature_indices], num_classes=num_classes, **decoder_args
        )

    def build_backbone(
        self, name: str, pretrained: bool | str, kwargs: dict
    ) -> tuple[nn.Module, list[int], list[int]]:
        """(backbone, the channels and strides of its features): a timm ``features_only`` model."""
        backbone = create_backbone(name, pretrained=pretrained, **kwargs)
        return backbone, backbone.feature_info.channels(), backbone.feature_info.reduction()

    def build_decoder(
        self, encoder_channels: list[int], *, num_classes: int, **args: Any
    ) -> nn.Module:
        """The decoder for features of ``encoder_channels`` (strides 4..32)."""
        raise NotImplementedError

    @property
    def has_aux_head(self) -> bool:
        return getattr(self.decoder, "aux_head", None) is not None

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's NCHW feature maps at strides 4, 8, 16, 32 of a normalised input, laid
        out in memory as the decoder's convolutions run fastest on ``x``'s device."""
        features = self.backbone(x)
        features = [features[i] for i in self.feature_indices]
        if self.features_channels_last:
            features = [f.permute(0, 3, 1, 2) for f in features]
        layout = self.feature_layout or feature_layout(x.device)
        return [f.contiguous(memory_format=layout) for f in features]

    def forward(
        self, x: torch.Tensor, with_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor | None]:
        """x: (B, 3, H, W) on the native scale -> logits (B, K, H, W); ``with_aux``: the pair
        (logits, aux_logits), aux_logits None without an aux head."""
        logits, aux = self._forward(x, with_aux=with_aux and self.has_aux_head)
        return (logits, aux) if with_aux else logits

    def forward_with_aux(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, aux_logits) through ``__call__`` (so hooks and ``compile`` apply).

        The training module calls this when its loss also supervises the auxiliary head.
        """
        return self(x, with_aux=True)

    def _forward(self, x: torch.Tensor, with_aux: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        h, w = x.shape[-2:]
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"input has {x.shape[1]} bands; the network reads {self.in_chans} "
                f"({'8-bit RGB' if self.raster is None else self.raster.describe()})"
            )
        x = self.input_normalization(x)
        # Within 3 pixels of a multiple of 32 the published networks run: their backbones round
        # up (Swin pads whole patches, ResNet's strided convs round up) and the logits are
        # stretched to the input, as here for every backbone that rounds up. Further off they
        # fail; here, and for backbones that round down, the input is reflect-padded to a
        # multiple of 32 and the logits, upsampled to the padded size so pixels stay aligned,
        # are cropped.
        d = self.size_divisor
        unpadded = self.backbone_rounds_up and -h % d < 4 and -w % d < 4
        if not unpadded:
            x = pad_to_multiple(x, d)
        outputs = self.decoder(self.features(x), with_aux=with_aux)
        outputs = outputs if with_aux else (outputs,)
        size = (h, w) if unpadded else x.shape[-2:]
        logits, *aux = (
            F.interpolate(o, size=size, mode="bilinear", align_corners=False)[..., :h, :w]
            for o in outputs
        )
        return logits, (aux[0] if aux else None)
