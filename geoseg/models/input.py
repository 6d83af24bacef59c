"""The network's input contract: what it expects of an image and how it prepares it.

A network applies its own scaling and normalisation, so datasets, test-time augmentation,
distillation from a teacher with other statistics and logged pictures all handle images on their
native scale (0-255 for 8-bit RGB, raw values for 16-bit rasters), and a checkpoint carries
everything inference needs to feed the network (``geoseg.bands.RasterInput`` for the bands).
"""

import torch
from torch import nn

from geoseg.bands import check_scaling
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
    """x: (B, C, H, W) on the native scale -> ``(scaled(x) - mean) / std`` per band, where
    ``scaling`` is a ``RasterInput``'s: None (x as it is), ``{"divisor": d}`` (x / d) or
    ``{"low": [...], "high": [...]}`` (``clip((x - low) / (high - low), 0, 1)``); None
    normalisation is the identity.

    The statistics are buffers that follow the network's device but are not saved in its
    state_dict: they come from the constructor arguments the checkpoint records.
    """

    def __init__(self, normalization: dict | None, scaling: dict | None = None) -> None:
        super().__init__()
        normalization = check_normalization(normalization)
        mean = std = None
        if normalization is not None:
            mean = torch.tensor(normalization["mean"]).view(1, -1, 1, 1)
            std = torch.tensor(normalization["std"]).view(1, -1, 1, 1)
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("std", std, persistent=False)
        low = span = None
        self.clip = scaling is not None and "low" in scaling
        if scaling is not None:
            scaling = check_scaling(scaling, len(scaling.get("low", [0])))
            if self.clip:
                low = torch.tensor(scaling["low"]).view(1, -1, 1, 1)
                span = torch.tensor(scaling["high"]).view(1, -1, 1, 1) - low
            else:
                low, span = torch.zeros(()), torch.tensor(scaling["divisor"])
        self.register_buffer("scale_low", low, persistent=False)
        self.register_buffer("scale_span", span, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.scale_low is not None:
            x = (x - self.scale_low) / self.scale_span
            x = x.clamp(0, 1) if self.clip else x
        if self.mean is None:
            return x
        if x.shape[1] != self.mean.shape[1]:
            raise ValueError(
                f"input has {x.shape[1]} bands; the network's normalisation expects "
                f"{self.mean.shape[1]}"
            )
        return (x - self.mean) / self.std
