"""The UNetFormer decoder (Wang et al., ISPRS J. P&RS 2022) and the conv blocks the decoders share.

Layout: building blocks, global-local attention and its Transformer block, weighted fusion, the
feature refinement head, then the decoder. `UNetFormer` and `FTUNetFormer` wire it to a backbone.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import ConvMlp
from torch import nn

from geoseg.models.common import pad_end, pad_to_multiple
from geoseg.models.swin import relative_position_index

__all__ = [
    "ConvBN",
    "ConvBNReLU",
    "FeatureRefinementHead",
    "GlobalLocalAttention",
    "GlobalLocalBlock",
    "SeparableConvBN",
    "UNetFormerDecoder",
    "WeightedFusion",
]


# --- building blocks -------------------------------------------------------------------------


class ConvBN(nn.Sequential):
    """k x k conv (no bias) + BatchNorm: (B, C_in, H, W) -> (B, C_out, H, W), k odd."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
        )


class ConvBNReLU(nn.Sequential):
    """k x k conv (no bias) + BatchNorm + activation: (B, C_in, H, W) -> (B, C_out, H, W), k odd.

    ReLU6 as in UNetFormer; the SegFormer and UPerNet heads pass ``nn.ReLU``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        activation: type[nn.Module] = nn.ReLU6,
    ) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            nn.BatchNorm2d(out_channels),
            activation(),
        )


class SeparableConvBN(nn.Sequential):
    """Depthwise k x k conv, pointwise 1x1 conv and a BatchNorm, no biases.

    Zero padding (k - 1) // 2 on each side: the size is kept for odd k and shrinks by one for
    even k (the caller pads first). ``norm_last``: depthwise, pointwise, BN (FT-UNetFormer);
    otherwise depthwise, BN, pointwise (UNetFormer).
    """

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, norm_last: bool
    ) -> None:
        depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            kernel_size,
            padding=(kernel_size - 1) // 2,
            groups=in_channels,
            bias=False,
        )
        pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        if norm_last:
            super().__init__(depthwise, pointwise, nn.BatchNorm2d(out_channels))
        else:
            super().__init__(depthwise, nn.BatchNorm2d(in_channels), pointwise)


# --- global-local Transformer block ----------------------------------------------------------


class GlobalLocalAttention(nn.Module):
    """Global-local attention: (B, C, H, W) -> (B, C, H, W), any H and W.

    Local branch: 3x3 conv+BN plus 1x1 conv+BN. Global branch: multi-head self-attention inside
    non-overlapping windows (relative position bias; the map is reflect-padded to whole windows),
    then the cross-shaped window context: vertical plus horizontal average pooling over one
    window length. The sum of both branches goes through a depthwise-separable projection whose
    window-size kernel is even, hence the one extra row and column reflected before it.
    """

    def __init__(self, dim: int, num_heads: int, window_size: int, norm_last: bool = False) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        if window_size % 2:
            raise ValueError(f"window_size={window_size} must be even")
        self.num_heads = num_heads
        self.window_size = window_size
        self.local_3x3 = ConvBN(dim, dim, 3)
        self.local_1x1 = ConvBN(dim, dim, 1)
        self.qkv = nn.Conv2d(dim, 3 * dim, 1, bias=False)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # derived from window_size, so kept out of the state dict
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size), persistent=False
        )
        self.proj = SeparableConvBN(dim, dim, window_size, norm_last)

    def relative_position_bias(self) -> torch.Tensor:
        """Additive attention bias: (num_heads, N, N) with N = window_size**2, contiguous (CUDA's
        fused attention kernels take a mask only with unit stride in its last dimension; a
        permuted one sends the attention to the unfused path)."""
        n = self.window_size**2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1).contiguous()

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
        """Vertical + horizontal window-long average pooling, stride 1: (B, C, H, W) -> same.

        One row (column) is reflected at the end and (ws/2 - 1) zeros pad each side, so the
        window-long even kernel keeps the size; zeros count in the average.
        """
        ws = self.window_size
        pad = ws // 2 - 1
        vertical = F.avg_pool2d(pad_end(x, bottom=1), (ws, 1), 1, padding=(pad, 0))
        horizontal = F.avg_pool2d(pad_end(x, right=1), (1, ws), 1, padding=(0, pad))
        return vertical + horizontal

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        h, w = x.shape[-2:]
        local = self.local_3x3(x) + self.local_1x1(x)
        global_ = self.window_attention(pad_to_multiple(x, self.window_size))[..., :h, :w]
        out = self.cross_window_context(global_) + local
        return self.proj(pad_end(out, bottom=1, right=1))


class GlobalLocalBlock(nn.Module):
    """GLTB: x + attn(norm(x)), then x + mlp(norm(x)); (B, C, H, W) -> (B, C, H, W)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        norm_last: bool = False,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(dim)
        self.attn = GlobalLocalAttention(dim, num_heads, window_size, norm_last)
        self.norm2 = nn.BatchNorm2d(dim)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio), act_layer=nn.ReLU6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


# --- fusion and refinement -------------------------------------------------------------------


class WeightedFusion(nn.Module):
    """WF: w0 * proj(skip) + w1 * up(x), w >= 0 summing to 1, then 3x3 ConvBNReLU.

    x: (B, C, h, w) decoder feature, skip: (B, C_skip, H, W) encoder feature -> (B, C, H, W).
    The skip projection is a 3x3 conv + BN with ``skip_conv_bn`` (FT-UNetFormer), else a 1x1
    conv (UNetFormer).
    """

    def __init__(
        self, skip_channels: int, channels: int, skip_conv_bn: bool = False, eps: float = 1e-8
    ) -> None:
        super().__init__()
        self.eps = eps
        self.skip_proj = (
            ConvBN(skip_channels, channels, 3)
            if skip_conv_bn
            else nn.Sequential(nn.Conv2d(skip_channels, channels, 1, bias=False))
        )
        self.weights = nn.Parameter(torch.ones(2))
        self.post_conv = ConvBNReLU(channels, channels, 3)

    def fusion_weights(self) -> torch.Tensor:
        """The normalised (skip, decoder) weights: (2,), non-negative, summing to 1."""
        w = F.relu(self.weights)
        return w / (w.sum() + self.eps)

    def mix(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """Weighted sum before the conv: x (B, C, h, w), skip (B, C_skip, H, W) -> (B, C, H, W)."""
        w = self.fusion_weights()
        # to the skip's exact size: x2, as the input was padded to a multiple of 32
        up = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return w[0] * self.skip_proj(skip) + w[1] * up

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w), skip (B, C_skip, H, W) -> (B, C, H, W)."""
        return self.post_conv(self.mix(x, skip))


class FeatureRefinementHead(nn.Module):
    """FRH at stride 4: WF with res1, spatial + channel attention paths, shortcut, projection.

    x: (B, C, h, w) decoder feature, skip: (B, C_skip, H, W) res1 -> (B, C, H, W).
    """

    def __init__(self, skip_channels: int, channels: int, fine_tuned_layout: bool) -> None:
        super().__init__()
        if channels < 16:
            raise ValueError(f"decode_channels={channels}: the channel attention needs >= 16")
        self.fuse = WeightedFusion(skip_channels, channels, skip_conv_bn=fine_tuned_layout)
        self.spatial_attention = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1, groups=channels), nn.Sigmoid()
        )
        self.channel_attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(channels, channels // 16, 1, bias=False),
            nn.ReLU6(),
            nn.Conv2d(channels // 16, channels, 1, bias=False),
            nn.Sigmoid(),
        )
        self.shortcut = ConvBN(channels, channels, 1)
        self.proj = SeparableConvBN(channels, channels, 3, norm_last=fine_tuned_layout)
        self.act = nn.ReLU6()

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        """x (B, C, h, w), skip (B, C_skip, H, W) -> (B, C, H, W)."""
        x = self.fuse(x, skip)
        refined = self.spatial_attention(x) * x + self.channel_attention(x) * x
        return self.act(self.proj(refined) + self.shortcut(x))


# --- decoder -----------------------------------------------------------------------------------


class UNetFormerDecoder(nn.Module):
    """UNetFormer decoder: features at strides 4, 8, 16, 32 -> logits (B, num_classes, H/4, W/4).

    res4 -> 1x1 ConvBN -> GLTB -> WF(res3) -> GLTB -> WF(res2) -> GLTB -> FRH(res1) -> head.
    ``fine_tuned_layout`` builds FT-UNetFormer's variant: 3x3 conv + BN on the skip features and
    BN after the pointwise conv of the separable projections. With ``aux_head``,
    ``forward(..., with_aux=True)`` also returns auxiliary logits at stride 4 from the sum of the
    three GLTB outputs.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int],
        *,
        num_classes: int,
        decode_channels: int,
        window_size: int,
        num_heads: int,
        dropout: float,
        aux_head: bool,
        fine_tuned_layout: bool,
    ) -> None:
        super().__init__()
        if len(encoder_channels) != 4:
            raise ValueError(
                f"expected 4 encoder feature channels (strides 4..32), got {list(encoder_channels)}"
            )
        c1, c2, c3, c4 = encoder_channels
        dc, ft = decode_channels, fine_tuned_layout
        self.pre_conv = ConvBN(c4, dc, 1)
        self.block4 = GlobalLocalBlock(dc, num_heads, window_size, norm_last=ft)
        self.fuse3 = WeightedFusion(c3, dc, skip_conv_bn=ft)
        self.block3 = GlobalLocalBlock(dc, num_heads, window_size, norm_last=ft)
        self.fuse2 = WeightedFusion(c2, dc, skip_conv_bn=ft)
        self.block2 = GlobalLocalBlock(dc, num_heads, window_size, norm_last=ft)
        self.refine = FeatureRefinementHead(c1, dc, fine_tuned_layout=ft)
        self.head = nn.Sequential(
            ConvBNReLU(dc, dc, 3), nn.Dropout2d(dropout), nn.Conv2d(dc, num_classes, 1, bias=False)
        )
        self.aux_head = (
            nn.Sequential(
                ConvBNReLU(dc, dc, 3), nn.Dropout(0.1), nn.Conv2d(dc, num_classes, 1, bias=False)
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
        size = h2.shape[-2:]
        context = (
            F.interpolate(h4, size=size, mode="bilinear", align_corners=True)
            + F.interpolate(h3, size=size, mode="bilinear", align_corners=True)
            + h2
        )
        return logits, self.aux_head(context)
