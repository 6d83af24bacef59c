"""Helpers the modules of ``geoseg.models`` share: plain values for records, padding for any size.

This module imports nothing else of ``geoseg.models``, so that any of them may import it.
"""

import torch
import torch.nn.functional as F

__all__ = ["as_plain", "pad_end", "pad_to_multiple"]


def as_plain(value, key: str = "value"):
    """``value`` as plain JSON-able Python (tuples -> lists), as checkpoints store it; anything else
    is a TypeError naming ``key``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [as_plain(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): as_plain(v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(
        f"{key} must be plain Python (int, float, str, bool, lists or dicts of them) so "
        f"checkpoints can rebuild the model; got {type(value).__name__}"
    )


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad x: (..., H, W) at the bottom and right up to multiples of `multiple` (see pad_end)."""
    h, w = x.shape[-2:]
    return pad_end(x, bottom=-h % multiple, right=-w % multiple)


def pad_end(x: torch.Tensor, bottom: int = 0, right: int = 0) -> torch.Tensor:
    """Pad x: (..., H, W) by ``bottom`` rows and ``right`` columns, reflecting the content.

    Reflect padding keeps image statistics continuous at the border; it needs the pad to be
    smaller than the side, so a side too short to reflect (e.g. a 1x1 deep feature map, where the
    published network fails) is replicated instead.
    """
    h, w = x.shape[-2:]
    if right:
        x = F.pad(x, (0, right, 0, 0), mode="reflect") if right < w else _replicate(x, right, -1)
    if bottom:
        x = F.pad(x, (0, 0, 0, bottom), mode="reflect") if bottom < h else _replicate(x, bottom, -2)
    return x


def _replicate(x: torch.Tensor, pad: int, dim: int) -> torch.Tensor:
    """``x`` with its last row/column along ``dim`` repeated ``pad`` more times.

    The same values and gradients as ``F.pad(mode="replicate")``, whose backward torch.compile
    (inductor) miscompiles for the NHWC-strided features of a Swin backbone.
    """
    edge = x.narrow(dim, x.shape[dim] - 1, 1)
    return torch.cat([x, edge.expand(*x.shape[:dim], pad, *x.shape[dim:][1:])], dim)
