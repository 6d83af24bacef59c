"""The Swin Transformer backbone of the published FT-UNetFormer, and loading its weights.

The segmentation form of Swin (Liu et al., ICCV 2021): the input is padded to a multiple of the
patch size, every block pads its feature map with zeros to a multiple of the window before the
cyclic shift, the shifted-window mask is built on that padded map, and each stage's output goes
through a LayerNorm of its own. That is what the published FT-UNetFormer computes, so weights
trained with it give the same logits here. timm's Swin shares the weights but shifts before it pads
and has no per-stage norms, which changes the features whenever a stage's side is not a multiple
of the window (e.g. 128 at stride 4 of a 512 tile).

``swin_state_dict`` reads weights of timm's Swin models and of the original (Microsoft) and
mmsegmentation layouts, such as GeoSeg's ``stseg_base.pth``, under this module's key names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import DropPath, Mlp
from torch import nn

__all__ = [
    "SWIN_PRESETS",
    "SwinTransformer",
    "relative_position_index",
    "swin_state_dict",
]

# timm model name -> architecture; ``pretrained=True`` fetches that model's weights from timm
SWIN_PRESETS: dict[str, dict] = {
    "swin_tiny_patch4_window7_224": dict(embed_dim=96, depths=(2, 2, 6, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin_small_patch4_window7_224": dict(embed_dim=96, depths=(2, 2, 18, 2), num_heads=(3, 6, 12, 24), window_size=7),
    "swin_base_patch4_window7_224": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=7),
    "swin_base_patch4_window12_384": dict(embed_dim=128, depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32), window_size=12),
    "swin_large_patch4_window7_224": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=7),
    "swin_large_patch4_window12_384": dict(embed_dim=192, depths=(2, 2, 18, 2), num_heads=(6, 12, 24, 48), window_size=12),
}  # fmt: skip


def relative_position_index(window_size: int) -> torch.Tensor:
    """(N, N) index into a ((2 ws - 1)^2, heads) bias table, N = ws^2, row-major windows."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window_size), torch.arange(window_size), indexing="ij")
    ).flatten(1)  # (2, N)
    relative = coords[:, :, None] - coords[:, None, :] + window_size - 1  # (2, N, N), >= 0
    return relative[0] * (2 * window_size - 1) + relative[1]


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C), H and W multiples of ws -> (B, nW, ws*ws, C), windows in row-major order."""
    b, h, w, c = x.shape
    ws = window_size
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, (h // ws) * (w // ws), ws * ws, c)


def window_merge(windows: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``window_partition``: (B, nW, ws*ws, C) -> (B, H, W, C)."""
    b, _, n, c = windows.shape
    ws = int(n**0.5)
    x = windows.view(b, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(b, h, w, c)


def shifted_window_mask(h: int, w: int, window_size: int, shift: int, device) -> torch.Tensor:
    """Additive mask (nW, N, N) for the windows of a (h, w) map rolled by -shift: 0 between tokens
    of the same region before the roll, -100 across regions (as the published Swin)."""
    region = torch.zeros(h, w, device=device)
    bands = (slice(0, -window_size), slice(-window_size, -shift), slice(-shift, None))
    for i, rows in enumerate(bands):
        for j, cols in enumerate(bands):
            region[rows, cols] = 3 * i + j
    windows = window_partition(region.view(1, h, w, 1), window_size).view(-1, window_size**2)
    different = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(different.shape, device=device).masked_fill(different, -100.0)


class WindowAttention(nn.Module):
    """Multi-head self-attention within windows, relative position bias: (B, nW, N, C) -> same."""

    def __init__(self, dim: int, num_heads: int, window_size: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads)
        )
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        # derived from window_size, so kept out of the state dict
        self.register_buffer(
            "relative_position_index", relative_position_index(window_size), persistent=False
        )

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, nW, N, C); mask: (nW, N, N) additive or None -> (B, nW, N, C)."""
        b, nw, n, c = x.shape
        heads = self.num_heads
        qkv = self.qkv(x).view(b, nw, n, 3, heads, c // heads)
        # 4-d (B, nW * heads, N, d), as the fused attention kernels want it
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).reshape(3, b, nw * heads, n, c // heads).unbind(0)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, heads).permute(2, 0, 1).to(q.dtype)  # (heads, N, N)
        bias = bias.expand(nw, heads, n, n) if mask is None else bias + mask[:, None].to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.reshape(nw * heads, n, n))
        return self.proj(out.view(b, nw, heads, n, -1).transpose(2, 3).reshape(b, nw, n, c))


class SwinBlock(nn.Module):
    """Pre-norm (shifted) window attention and MLP, residual: (B, H, W, C) -> same, any H, W."""

    def __init__(
        self, dim: int, num_heads: int, window_size: int, shift: int, drop_path: float = 0.0
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, num_heads, window_size)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, 4 * dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """x: (B, H, W, C); mask: the stage's shifted-window mask (used by shifted blocks)."""
        _, h, w, _ = x.shape
        ws, s = self.window_size, self.shift
        y = F.pad(self.norm1(x), (0, 0, 0, -w % ws, 0, -h % ws))  # zeros, after the norm
        hp, wp = y.shape[1:3]
        if s:
            y = torch.roll(y, (-s, -s), dims=(1, 2))
        y = window_merge(self.attn(window_partition(y, ws), mask if s else None), hp, wp)
        if s:
            y = torch.roll(y, (s, s), dims=(1, 2))
        x = x + self.drop_path(y[:, :h, :w])
        return x + self.drop_path(self.mlp(self.norm2(x)))


class PatchMerging(nn.Module):
    """2x2 neighbours concatenated, LayerNorm, linear: (B, H, W, C) -> (B, ceil H/2, ceil W/2, 2C)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(4 * dim)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[1:3]
        x = F.pad(x, (0, 0, 0, w % 2, 0, h % 2))
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], -1)
        return self.reduction(self.norm(x))


class SwinStage(nn.Module):
    """Blocks alternating plain and shifted windows, then patch merging for the next stage."""

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        window_size: int,
        drop_paths: Sequence[float],
        downsample: bool,
    ) -> None:
        super().__init__()
        self.window_size = window_size
        self.shift = window_size // 2
        self.blocks = nn.ModuleList(
            SwinBlock(dim, num_heads, window_size, self.shift if i % 2 else 0, drop_paths[i])
            for i in range(depth)
        )
        self.downsample = PatchMerging(dim) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, H, W, C) -> (the stage's output, the next stage's input)."""
        ws = self.window_size
        hp, wp = -(-x.shape[1] // ws) * ws, -(-x.shape[2] // ws) * ws
        mask = shifted_window_mask(hp, wp, ws, self.shift, x.device)
        for block in self.blocks:
            x = block(x, mask)
        return x, (self.downsample(x) if self.downsample is not None else x)


class SwinTransformer(nn.Module):
    """Swin backbone: image (B, C_in, H, W) -> 4 NCHW features at strides 4, 8, 16, 32, any H, W.

    ``channels`` are the features' channels (embed_dim x 1, 2, 4, 8). ``drop_path_rate`` 0.3 is
    the published FT-UNetFormer's.
    """

    reductions = (4, 8, 16, 32)

    def __init__(
        self,
        *,
        embed_dim: int = 128,
        depths: Sequence[int] = (2, 2, 18, 2),
        num_heads: Sequence[int] = (4, 8, 16, 32),
        window_size: int = 7,
        drop_path_rate: float = 0.3,
        in_chans: int = 3,
        patch_size: int = 4,
    ) -> None:
        super().__init__()
        if len(depths) != 4 or len(num_heads) != 4:
            raise ValueError(f"Swin needs 4 stages; got depths={depths}, num_heads={num_heads}")
        self.patch_size = patch_size
        self.channels = [embed_dim * 2**i for i in range(4)]
        for dim, heads in zip(self.channels, num_heads, strict=True):
            if dim % heads:
                raise ValueError(f"Swin stage width {dim} is not divisible by {heads} heads")
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(in_chans, embed_dim, patch_size, stride=patch_size)
        self.patch_embed.norm = nn.LayerNorm(embed_dim)
        # stochastic depth grows linearly over all blocks
        rates = torch.linspace(0, drop_path_rate, sum(depths)).tolist()
        starts = [sum(depths[:i]) for i in range(4)]
        self.layers = nn.ModuleList(
            SwinStage(
                self.channels[i],
                depths[i],
                num_heads[i],
                window_size,
                rates[starts[i] : starts[i] + depths[i]],
                downsample=i < 3,
            )
            for i in range(4)
        )
        self.output_norms = nn.ModuleList(nn.LayerNorm(dim) for dim in self.channels)
        self.apply(_init_weights)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        h, w = x.shape[-2:]
        p = self.patch_size
        x = self.patch_embed.proj(F.pad(x, (0, -w % p, 0, -h % p)))
        x = self.patch_embed.norm(x.permute(0, 2, 3, 1))  # (B, H/4, W/4, C)
        features = []
        for stage, norm in zip(self.layers, self.output_norms, strict=True):
            out, x = stage(x)
            features.append(norm(out).permute(0, 3, 1, 2))
        return features


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# --- weights ------------------------------------------------------------------------------------


def swin_state_dict(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """A Swin state dict in any known layout -> this module's key names, and the keys left out.

    Layouts: timm (patch merging at the start of stages 1-3, a final ``norm``), the original
    and mmsegmentation one (patch merging at the end of stages 0-2, per-stage ``norm0``..``norm3``),
    with or without a ``backbone.`` prefix. Left out (and returned so callers can report them): the
    derived ``relative_position_index``/``attn_mask`` buffers, classifier and final norm, and any
    non-backbone keys of a segmentation checkpoint (e.g. ``decode_head.*``).
    """
    prefixed = any(k.startswith("backbone.") for k in state)
    timm_layout = any(
        k.removeprefix("backbone.").startswith(("layers.3.downsample.", "layers_3.downsample."))
        for k in state
    )
    mapped, left_out = {}, []
    for key, value in state.items():
        name = key.removeprefix("backbone.") if prefixed else key
        if (prefixed and not key.startswith("backbone.")) or name.endswith(
            ("relative_position_index", "attn_mask")
        ):
            left_out.append(key)
            continue
        name = re.sub(r"^layers_(\d)\.", r"layers.\1.", name)
        if timm_layout:
            name = re.sub(
                r"^layers\.(\d)\.downsample\.",
                lambda m: f"layers.{int(m[1]) - 1}.downsample.",
                name,
            )
        name = re.sub(r"^norm(\d)\.", r"output_norms.\1.", name)
        if name.startswith(("head.", "norm.")):
            left_out.append(key)
            continue
        mapped[name] = value
    return mapped, left_out
