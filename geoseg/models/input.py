"""The network's input contract: what it expects of an image and how it prepares it.

A network applies its own normalisation, so datasets, test-time augmentation, distillation from a
teacher with other statistics and logged pictures all handle images on their native scale (0-255
for 8-bit RGB), and a checkpoint carries everything inference needs to feed the network.
"""

import torch
from torch import nn

from geoseg.errors import ConfigError


def check_normalization(normalization: dict | None) -> dict | None:
    """``{"mean": [...], "std": [...]}`` as plain lists of floats, or None (no normalisation)."""
    if normalization is None:
        return None
    try:
        mean = [float(v) for v in normalization["mean"]]
        std = [float(v) for v in normalization["std"]]
    except (KeyError, TypeError, ValueError) as error:
        raise ConfigError(
            f"normalization={normalization!r}: expected dict(mean=[...], std=[...]), one number "
            "per band, on the images' own scale (0-255 for 8-bit RGB)"
        ) from error
    if len(mean) != len(std) or not mean or min(std) <= 0:
        raise ConfigError(
            f"normalization={normalization!r}: mean and std need one value per band, std > 0"
        )
    return {"mean": mean, "std": std}


class InputNormalization(nn.Module):
    """x: (B, C, H, W) on the native scale -> ``(x - mean) / std`` per band; identity for None.

    The statistics are buffers that follow the network's device but are not saved in its
    state_dict: they come from the constructor arguments the checkpoint records.
    """

    def __init__(self, normalization: dict | None) -> None:
        super().__init__()
        normalization = check_normalization(normalization)
        mean = std = None
        if normalization is not None:
            mean = torch.tensor(normalization["mean"]).view(1, -1, 1, 1)
            std = torch.tensor(normalization["std"]).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mean is None:
            return x
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"input has {x.shape[1]} bands; the network's normalisation expects "
                f"{self.mean.shape[1]}"
            )
        return (x - self.mean) / self.std
