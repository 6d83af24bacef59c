"""Sliding windows: tile offsets, the blend weights of overlapping tiles and their one check."""

import torch

# GeoTIFF scenes are predicted by sliding window, these many tiles of this size per forward pass
# unless the caller says otherwise.
SCENE_TILE_SIZE, SCENE_TILES_PER_BATCH = 1024, 4


def check_overlap(overlap: int, tile_size: int) -> None:
    """A ValueError naming ``overlap`` unless tiles of ``tile_size`` can overlap by that much."""
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap {overlap}: expected an integer in [0, tile size {tile_size})")


def tile_starts(length: int, tile_size: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering ``length`` with at least ``overlap`` pixels of overlap."""
    if length <= tile_size:
        return [0]
    stride = tile_size - overlap
    starts = list(range(0, length - tile_size, stride))
    return [*starts, length - tile_size]  # the last tile ends exactly at the border


def blend_window(size: int, overlap: int, device: torch.device) -> torch.Tensor:
    """(size,) weights rising linearly over ``overlap`` pixels at both ends, 1 in between, > 0."""
    position = torch.arange(size, device=device, dtype=torch.float32)
    ramp = torch.minimum(position + 1, size - position) / (overlap + 1)
    return ramp.clamp(max=1.0)
