"""The UNetFormer decoder family (Wang et al., ISPRS J. P&RS 2022) and the encoder-decoder base.

Layout: building blocks, global-local attention and its Transformer block, weighted fusion, the
feature refinement head, the decoder, then `EncoderDecoder`, which wires a timm backbone to the
decoder and handles any input size. `FTUNetFormer` and `UNetFormer` only choose the backbone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import timm
import torch
import torch.nn.functional as F
from timm.layers import Format
from torch import nn

from geoseg.classes import IMAGENET_NORMALIZATION, NUM_CLASSES
from geoseg.models.checkpoint import as_plain
from geoseg.models.input import InputNormalization, check_normalization

__all__ = [
    "ConvBN",
    "ConvBNReLU",
    "EncoderDecoder",
    "FeatureRefinementHead",
    "GlobalLocalAttention",
    "GlobalLocalBlock",
    "SeparableConvBN",
    "UNetFormerDecoder",
    "WeightedFusion",
    "create_backbone",
    "pad_to_multiple",
]


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad x: (..., H, W) at the bottom and right up to multiples of `multiple`.

    Reflect padding keeps image statistics continuous at the border; it needs the pad to be
    smaller than the side, so a side too short to reflect (e.g. a 1x1 deep feature map) is
    replicated instead.
    """
    h, w = x.shape[-2:]
    pad_h, pad_w = -h % multiple, -w % multiple
    if pad_w:
        x = F.pad(x, (0, pad_w, 0, 0), mode="reflect") if pad_w < w else _replicate(x, pad_w, -1)
    if pad_h:
        x = F.pad(x, (0, 0, 0, pad_h), mode="reflect") if pad_h < h else _replicate(x, pad_h, -2)
    return x


def _replicate(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """``x`` with its last row/column along ``dim`` repeated ``pad`` more times.

    The same values and gradients as ``F.pad(mode="replicate")``, whose backward torch.compile
    (inductor) miscompiles for the NHWC-strided features of a Swin backbone.
    """
    edge = x.narrow(dim, x.shape[dim] - 1, 1)
    return torch.cat([x, edge.expand(*x.shape[:dim], pad, *x.shape[dim:][1:])], dim)


# --- building blocks -------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """k x k conv (no bias) + BatchNorm: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding="same", bias=False),
            nn.BatchNorm2d(out_channels),
        )


class ConvBNReLU(nn.Sequential):
    """k x k conv (no bias) + BatchNorm + ReLU: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding="same", bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class SeparableConvBN(nn.Sequential):
    """Depthwise k x k conv + BN + pointwise 1x1 conv: (B, C_in, H, W) -> (B, C_out, H, W)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        # explicit (asymmetric for even k, e.g. k = window_size) zero padding keeps the size;
        # padding="same" would copy the input and warn for even kernels
        before, after = (kernel_size - 1) // 2, kernel_size // 2
        super().__init__(
            nn.ZeroPad2d((before, after, before, after)),
            nn.Conv2d(in_channels, in_channels, kernel_size, groups=in_channels, bias=False),
            nn.BatchNorm2d(in_channels),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
        )


# --- global-local Transformer block ----------------------------------------------------------


class GlobalLocalAttention(nn.Module):
    """Global-local attention: (B, C, H, W) -> (B, C, H, W), any H and W.

    Local branch: 3x3 conv+BN plus 1x1 conv+BN. Global branch: multi-head self-attention inside
    non-overlapping windows (relative position bias), then the cross-shaped window context
    interaction (horizontal plus vertical average pooling across window borders). The sum of the
    two branches goes through a depthwise-separable projection.
    """

    def __init__(self, dim: int, num_heads: int = 8, window_size: int = 8) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.num_heads = num_heads
        self.window_size = window_size
        self.local3 = ConvBN(dim, dim, 3)
        self.local1 = ConvBN(dim, dim, 1)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        coords = torch.stack(
            torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
        ).flatten(1)  # (2, N)
        relative = coords[:, :, None] - coords[:, None, :] + window_size - 1  # (2, N, N), >= 0
        index = relative[0] * (2 * window_size - 1) + relative[1]
        # derived from window_size, so kept out of the state dict
        self.register_buffer("relative_position_index", index, persistent=False)
        self.proj = SeparableConvBN(dim, dim, window_size)

    def relative_position_bias(self) -> torch.Tensor:
        """Additive attention bias: (num_heads, N, N) with N = window_size**2."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def window_attention(self, x: torch.Tensor) -> torch.Tensor:
        """Self-attention within windows: (B, C, H, W) -> (B, C, H, W), H and W multiples of ws."""
        b, c, h, w = x.shape
        ws, heads = self.window_size, self.num_heads
        nh, nw, d = h // ws, w // ws, c // heads
        qkv = self.qkv(x).view(b, 3, heads, d, nh, ws, nw, ws)
        qkv = qkv.permute(1, 0, 4, 6, 2, 5, 7, 3).reshape(3, b * nh * nw, heads, ws * ws, d)
        q, k, v = qkv.unbind(0)
        bias = self.relative_position_bias().to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (B*nW, heads, N, d)
        out = out.view(b, nh, nw, heads, ws, ws, d).permute(0, 3, 6, 1, 4, 2, 5)
        return out.reshape(b, c, h, w)

    def cross_window_context(self, x: torch.Tensor) -> torch.Tensor:
        """Horizontal + vertical average pooling (stride 1, window-long): (B, C, H, W) -> same."""
        ws = self.window_size
        before, after = (ws - 1) // 2, ws // 2
        horizontal = F.avg_pool2d(F.pad(x, (before, after, 0, 0), mode="reflect"), (1, ws), 1)
        vertical = F.avg_pool2d(F.pad(x, (0, 0, before, after), mode="reflect"), (ws, 1), 1)
        return horizontal + vertical

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        h, w = x.shape[-2:]
        local = self.local3(x) + self.local1(x)
        padded = pad_to_multiple(x, self.window_size)
        global_ = self.cross_window_context(self.window_attention(padded))[..., :h, :w]
        return self.proj(global_ + local)


class GlobalLocalBlock(nn.Module):
    """GLTB: x + attn(norm(x)), then x + mlp(norm(x)); (B, C, H, W) -> (B, C, H, W)."""

    def __init__(
        self, dim: int, num_heads: int = 8, window_size: int = 8, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = GlobalLocalAttention(dim, num_heads, window_size)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = nn.Sequential(nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Conv2d(hidden, dim, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --- fusion and refinement -------------------------------------------------------------------


class WeightedFusion(nn.Module):
    """WF: w0 * proj(skip) + w1 * up(x), w >= 0 summing to 1, then 3x3 ConvBNReLU.

    x: (B, C, h, w) decoder feature, skip: (B, C_skip, H, W) encoder feature -> (B, C, H, W).
    """

    def __init__(self, skip_channels: int, channels: int, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps
        self.skip_proj = nn.Conv2d(skip_channels, channels, 1, bias=False)
        self.weights = nn.Parameter(torch.ones(2))
        self.post_conv = ConvBNReLU(channels, channels, 3)

    def fusion_weights(self) -> torch.Tensor:
        """The normalised (skip, decoder) weights: (2,), non-negative, summing to 1."""
        w = F.relu(self.weights)
        return w / (w.sum() + self.eps)

    def mix(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Weighted sum before the conv: x (B, C, h, w), skip (B, C_skip, H, W) -> (B, C, H, W)."""
        w = self.fusion_weights()
        # to the skip's exact size: x2 when the input was padded to a multiple of 32
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return w[0] * self.skip_proj(skip) + w[1] * up

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w), skip (B, C_skip, H, W) -> (B, C, H, W)."""
        return self.post_conv(self.mix(x, skip))


class FeatureRefinementHead(nn.Module):
    """FRH at stride 4: WF with res1, spatial + channel attention paths, shortcut, projection.

    x: (B, C, h, w) decoder feature, skip: (B, C_skip, H, W) res1 -> (B, C, H, W).
    """

    def __init__(self, skip_channels: int, channels: int) -> None:
        super().__init__()
        self.fuse = WeightedFusion(skip_channels, channels)
        self.spatial = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Sigmoid()
        )
        reduced = max(channels // 16, 4)
        self.channel = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, reduced, 1),
            nn.ReLU(inplace=True),
            nn.Conv2d(reduced, channels, 1),
            nn.Sigmoid(),
        )
        self.shortcut = ConvBN(channels, channels, 1)
        self.proj = SeparableConvBN(channels, channels, 3)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w), skip (B, C_skip, H, W) -> (B, C, H, W)."""
        x = self.fuse(x, skip)
        refined = self.spatial(x) * x + self.channel(x) * x
        return self.act(self.proj(refined) + self.shortcut(x))


# --- decoder -----------------------------------------------------------------------------------


class UNetFormerDecoder(nn.Module):
    """UNetFormer decoder: features at strides 4, 8, 16, 32 -> logits (B, num_classes, H/4, W/4).

    res4 -> 1x1 ConvBN -> GLTB -> WF(res3) -> GLTB -> WF(res2) -> GLTB -> FRH(res1) -> head.
    With `aux_head`, `forward(..., with_aux=True)` also returns auxiliary logits at stride 4 from
    the sum of the three GLTB outputs.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        *,
        num_classes: int,
        decode_channels: int = 64,
        window_size: int = 8,
        num_heads: int = 8,
        dropout: float = 0.1,
        aux_head: bool = True,
    ) -> None:
        super().__init__()
        if len(encoder_channels) != 4:
            raise ValueError(
                f"expected 4 encoder feature channels (strides 4..32), got {list(encoder_channels)}"
            )
        c1, c2, c3, c4 = encoder_channels
        dc = decode_channels
        self.pre_conv = ConvBN(c4, dc, 1)
        self.block4 = GlobalLocalBlock(dc, num_heads, window_size)
        self.fuse3 = WeightedFusion(c3, dc)
        self.block3 = GlobalLocalBlock(dc, num_heads, window_size)
        self.fuse2 = WeightedFusion(c2, dc)
        self.block2 = GlobalLocalBlock(dc, num_heads, window_size)
        self.refine = FeatureRefinementHead(c1, dc)
        self.head = nn.Sequential(
            ConvBNReLU(dc, dc, 3), nn.Dropout2d(dropout), nn.Conv2d(dc, num_classes, 1)
        )
        self.aux_head = (
            nn.Sequential(
                ConvBNReLU(dc, dc, 3), nn.Dropout2d(dropout), nn.Conv2d(dc, num_classes, 1)
            )
            if aux_head
            else None
        )

    def forward(
        self, features: Sequence[torch.Tensor], with_aux: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """features: 4 NCHW maps at strides 4..32 -> logits (B, K, H/4, W/4) [, aux logits]."""
        res1, res2, res3, res4 = features
        h4 = self.block4(self.pre_conv(res4))
        h3 = self.block3(self.fuse3(h4, res3))
        h2 = self.block2(self.fuse2(h3, res2))
        logits = self.head(self.refine(h2, res1))
        if not with_aux:
            return logits
        if self.aux_head is None:
            raise RuntimeError("auxiliary logits requested but the decoder has no aux_head")
        size = res1.shape[-2:]
        context = sum(
            F.interpolate(h, size=size, mode="bilinear", align_corners=False) for h in (h4, h3, h2)
        )
        return logits, self.aux_head(context)


# --- backbone + decoder ------------------------------------------------------------------------


def create_backbone(
    name: str,
    *,
    pretrained: bool | str | os.PathLike = False,
    out_indices: Sequence[int] | None = None,
    **kwargs: Any,
) -> nn.Module:
    """A timm `features_only` backbone; `pretrained` is True (timm's weights) or a local file.

    A local file (.pth/.safetensors/.bin of the full timm model's state dict) is loaded offline by
    timm itself, so its usual key filtering and classifier dropping apply.
    """
    if isinstance(pretrained, (str, os.PathLike)):
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(
                f"backbone weights file not found: {str(path)!r} (pretrained= for {name!r}); "
                "expected a local .pth/.safetensors/.bin state dict of that timm model"
            )
        kwargs["pretrained_cfg_overlay"] = dict(file=str(path))
        pretrained = True
    if out_indices is not None:
        kwargs["out_indices"] = tuple(out_indices)
    return timm.create_model(name, features_only=True, pretrained=bool(pretrained), **kwargs)


class EncoderDecoder(nn.Module):
    """timm backbone -> UNetFormer decoder, any input size: (B, 3, H, W) -> (B, K, H, W).

    The input is on its native scale (0-255 RGB): the network applies its own ``normalization``
    (mean/std per band, ImageNet's by default; None for inputs normalised beforehand).
    ``forward_with_aux`` also returns the auxiliary head's logits (``aux_head``). ``pretrained`` is
    False, True (timm's ImageNet weights) or a local weights file of the backbone.

    Subclasses choose the backbone: ``default_backbone`` and ``default_decode_channels`` fill
    those arguments when they are left out, ``out_indices`` picks the backbone's stride 4, 8, 16,
    32 stages and ``backbone_defaults`` are extra timm kwargs (the user's ``backbone_kwargs``
    override them). ``init_args`` holds the constructor arguments as plain values, ``pretrained``
    recorded as False, so ``type(net)(**net.init_args)`` rebuilds the architecture for a
    checkpoint's weights.
    """

    default_backbone: str
    default_decode_channels: int
    out_indices: tuple[int, ...] | None = None
    backbone_defaults: dict[str, Any] = {}

    def __init__(
        self,
        *,
        num_classes: int = NUM_CLASSES,
        backbone: str | None = None,
        pretrained: bool | str = False,
        backbone_kwargs: dict | None = None,
        decode_channels: int | None = None,
        window_size: int = 8,
        dropout: float = 0.1,
        aux_head: bool = True,
        normalization: dict | None = IMAGENET_NORMALIZATION,
    ) -> None:
        super().__init__()
        backbone = backbone or self.default_backbone
        decode_channels = decode_channels or self.default_decode_channels
        backbone_kwargs = dict(backbone_kwargs or {})
        normalization = check_normalization(normalization)
        self.init_args: dict[str, Any] = as_plain(
            dict(
                num_classes=num_classes,
                backbone=backbone,
                pretrained=False,
                backbone_kwargs=backbone_kwargs,
                decode_channels=decode_channels,
                window_size=window_size,
                dropout=dropout,
                aux_head=aux_head,
                normalization=normalization,
            ),
            "init_args",
        )
        self.input_normalization = InputNormalization(normalization)
        self.backbone = create_backbone(
            backbone,
            pretrained=pretrained,
            out_indices=self.out_indices,
            **{**self.backbone_defaults, **backbone_kwargs},
        )
        reductions = list(self.backbone.feature_info.reduction())
        if reductions != [4, 8, 16, 32]:
            raise ValueError(
                f"backbone {backbone!r} with out_indices={self.out_indices} gives feature strides "
                f"{reductions}; the UNetFormer decoder needs [4, 8, 16, 32]"
            )
        # the input must divide down to the coarsest feature map without rounding
        self.size_divisor = max(reductions)
        # timm reports its feature layout (Swin: NHWC; ConvNets and some Swin variants: NCHW)
        fmt = getattr(self.backbone, "output_fmt", Format.NCHW)
        self.features_nhwc = Format(fmt) is Format.NHWC
        self.decoder = UNetFormerDecoder(
            self.backbone.feature_info.channels(),
            num_classes=num_classes,
            decode_channels=decode_channels,
            window_size=window_size,
            dropout=dropout,
            aux_head=aux_head,
        )

    @property
    def has_aux_head(self) -> bool:
        return self.decoder.aux_head is not None

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
        x = pad_to_multiple(self.input_normalization(x), self.size_divisor)
        features = self.backbone(x)
        if self.features_nhwc:
            features = [f.permute(0, 3, 1, 2) for f in features]
        outputs = self.decoder(features, with_aux=with_aux)
        outputs = outputs if with_aux else (outputs,)
        # upsample to the padded size first so pixels stay aligned, then crop the padding off
        logits, *aux = (
            F.interpolate(o, size=x.shape[-2:], mode="bilinear", align_corners=False)[..., :h, :w]
            for o in outputs
        )
        return logits, (aux[0] if aux else None)
