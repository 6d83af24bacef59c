"""The raster input contract: which bands a network reads, of which data type, and their scaling.

A network trained on multispectral or 16-bit rasters records its ``RasterInput`` with its other
constructor arguments, so a checkpoint tells inference which bands to read and how to scale them,
and a raster that does not fit is refused with its name rather than misread. Networks without one
read 8-bit RGB (grey, a colour table or RGB + alpha are turned into RGB) on the 0-255 scale.
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from geoseg.errors import BandMismatchError, ConfigError

# Data types a raster may hold; float rasters are read as they are (scaled by the contract).
RASTER_DTYPES = ("uint8", "uint16", "int16", "uint32", "int32", "float32", "float64")


@dataclass(frozen=True)
class RasterInput:
    """Which bands of each raster a network reads and how their values are scaled.

    ``bands``: 1-based band indexes, in the order the network takes them (``(1, 2, 3, 4)``: red,
    green, blue, near-infrared of a 4-band scene). ``count``: how many bands every raster holds
    (default: the highest band read); a raster with another count is refused, since its bands
    may mean something else. ``dtype``: the rasters' data type (``"uint16"``, ...), also checked.
    ``scaling``: applied by the network before its mean/std normalisation, None (values as they
    are), ``{"divisor": d}`` (``x / d``, e.g. 10000 for reflectance) or ``{"low": [...], "high":
    [...]}`` (a per-band stretch ``clip((x - low) / (high - low), 0, 1)``; ``band_statistics``
    computes it from percentiles of the Train split).
    """

    bands: tuple[int, ...]
    count: int | None = None
    dtype: str = "uint8"
    scaling: dict | None = None

    def __post_init__(self) -> None:
        try:
            bands = tuple(int(b) for b in self.bands)
        except (TypeError, ValueError) as error:
            raise ConfigError(
                f"RasterInput bands={self.bands!r}: expected 1-based band numbers"
            ) from error
        if not bands or min(bands) < 1 or len(set(bands)) != len(bands):
            raise ConfigError(
                f"RasterInput bands={self.bands!r}: expected distinct 1-based band numbers"
            )
        count = max(bands) if self.count is None else int(self.count)
        if count < max(bands):
            raise ConfigError(
                f"RasterInput count={self.count}: the rasters must hold band {max(bands)}"
            )
        if self.dtype not in RASTER_DTYPES:
            raise ConfigError(
                f"RasterInput dtype={self.dtype!r}: expected one of {', '.join(RASTER_DTYPES)}"
            )
        object.__setattr__(self, "bands", bands)
        object.__setattr__(self, "count", count)
        object.__setattr__(self, "scaling", check_scaling(self.scaling, len(bands)))

    @property
    def in_chans(self) -> int:
        return len(self.bands)

    def describe(self) -> str:
        """E.g. '4-band uint16 rasters (bands 1, 2, 3, 4 read)'."""
        read = ", ".join(str(b) for b in self.bands)
        return f"{self.count}-band {self.dtype} rasters (bands {read} read)"

    def to_dict(self) -> dict:
        return {
            "bands": list(self.bands),
            "count": self.count,
            "dtype": self.dtype,
            "scaling": self.scaling,
        }

    @classmethod
    def of(cls, value: "RasterInput | dict | None") -> "RasterInput | None":
        """``value`` as a RasterInput: one already, its ``to_dict()`` (as checkpoints store it), or
        None (8-bit RGB)."""
        if value is None or isinstance(value, cls):
            return value
        if isinstance(value, dict):
            try:
                return cls(**value)
            except TypeError as error:
                raise ConfigError(
                    f"raster={value!r}: expected RasterInput(bands=..., count=..., dtype=..., "
                    "scaling=...) or its dict"
                ) from error
        raise ConfigError(f"raster={value!r}: expected a RasterInput, its dict or None")


def check_scaling(scaling: dict | None, in_chans: int) -> dict | None:
    """``scaling`` as plain floats: None, ``{"divisor": d}`` or ``{"low": [...], "high": [...]}``
    with one value per band read."""
    if scaling is None:
        return None
    keys = set(scaling) if isinstance(scaling, dict) else None
    try:
        if keys == {"divisor"}:
            divisor = float(scaling["divisor"])
            if divisor > 0:
                return {"divisor": divisor}
        elif keys == {"low", "high"}:
            low = [float(v) for v in scaling["low"]]
            high = [float(v) for v in scaling["high"]]
            if len(low) == len(high) == in_chans and all(
                h > lo for lo, h in zip(low, high, strict=True)
            ):
                return {"low": low, "high": high}
    except (TypeError, ValueError):
        pass
    raise ConfigError(
        f"scaling={scaling!r}: expected None, {{'divisor': d > 0}} or {{'low': [...], 'high': "
        f"[...]}} with {in_chans} values each (one per band read), high > low"
    )


def picture(image: torch.Tensor, raster: "RasterInput | None") -> np.ndarray:
    """image: (C, H, W) on its native scale -> (H, W, 3) uint8 to look at: 8-bit RGB as it is;
    other bands shown as their first three (one band: grey), each stretched between its 2nd and
    98th percentile in this image (raw 16-bit values are not viewable as they are)."""
    image = image.detach().float().cpu()
    if raster is None:
        return image[:3].clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    bands = image[:3] if len(image) >= 3 else image[:1].expand(3, -1, -1)
    flat = bands.flatten(1)
    low = flat.quantile(0.02, dim=1).view(3, 1, 1)
    high = flat.quantile(0.98, dim=1).view(3, 1, 1)
    stretched = (bands - low) / (high - low).clamp_min(1e-6)
    return (stretched.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()


def network_raster_input(
    in_chans: int | None, raster: "RasterInput | dict | None"
) -> RasterInput | None:
    """A network's contract from its ``in_chans`` and ``raster`` arguments: ``raster`` if given (its
    band count must equal ``in_chans`` when both are), else None for 3 bands (8-bit RGB) and
    bands 1..in_chans of uint8 rasters for any other count."""
    raster = RasterInput.of(raster)
    if raster is None:
        if in_chans is None or in_chans == 3:
            return None
        if in_chans < 1:
            raise ConfigError(f"in_chans={in_chans}: expected at least one band")
        return RasterInput(bands=tuple(range(1, in_chans + 1)))
    if in_chans is not None and in_chans != raster.in_chans:
        raise ConfigError(
            f"in_chans={in_chans} differs from the {raster.in_chans} bands of raster={raster}"
        )
    return raster


def same_raster_input(inputs: Sequence["RasterInput | None"]) -> bool:
    """Whether every network reads the same bands of the same rasters (scaling may differ)."""
    keys = {None if r is None else (r.bands, r.count, r.dtype) for r in inputs}
    return len(keys) == 1


def describe_input(raster: "RasterInput | None") -> str:
    """What a network or dataset with ``raster`` reads, in words."""
    return "8-bit RGB images" if raster is None else raster.describe()


def check_same_input(
    raster: "RasterInput | None",
    expected: "RasterInput | None",
    subject: str,
    other: str,
    advice: str = "",
) -> None:
    """The one band-agreement check: a BandMismatchError "<subject> reads <raster>, <other>
    <expected><advice>" unless both read the same bands of the same rasters."""
    if not same_raster_input([raster, expected]):
        raise BandMismatchError(
            f"{subject} reads {describe_input(raster)}, {other} {describe_input(expected)}{advice}"
        )
