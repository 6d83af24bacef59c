"""The shape check every segmentation loss makes on its inputs."""

from torch import Tensor


def check_shapes(logits: Tensor, target: Tensor) -> None:
    """logits (B, C, H, W) and target (B, H, W) of the same batch and spatial size, or an error."""
    if logits.ndim != 4 or target.ndim != 3 or logits.shape[0] != target.shape[0]:
        raise ValueError(
            f"logits {tuple(logits.shape)} and target {tuple(target.shape)}: "
            "expected logits (B, C, H, W) and target (B, H, W)"
        )
    if logits.shape[2:] != target.shape[1:]:
        raise ValueError(
            f"logits spatial size {tuple(logits.shape[2:])} != target size "
            f"{tuple(target.shape[1:])}; resize the logits to the mask first"
        )
