"""Per-band statistics of a split's images: the scaling and normalisation of a multi-band model.

    python -m geoseg.datasets.stats --root data/scenes --split Train --bands 1,2,3,4 --dtype uint16

Reads every image of ``<root>/<split>/images_png`` (GeoTIFFs or any raster GDAL reads) with the
bands and data type of a ``RasterInput``, counts the values of each band over the valid pixels
(nodata pixels are left out) in exact integer histograms, and derives from them a per-band
percentile stretch (``RasterInput.scaling``) and the mean and std of the stretched values (the
network's ``normalization``). A config then builds its network from the saved file::

    stats = BandStatistics.load("data/scenes/Train/band_statistics.json")
    net = FTUNetFormer(raster=stats.raster_input(), normalization=stats.normalization, ...)

or computes them once and reuses them on every later import with ``band_statistics_cached``.
"""

import json
import logging
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

from geoseg.bands import RasterInput
from geoseg.datasets.io import list_files, read_image_and_valid
from geoseg.errors import ConfigError, DataError
from geoseg.files import read_json_file, write_text_atomic

log = logging.getLogger(__name__)

BAND_STATISTICS_FILE = "band_statistics.json"
DEFAULT_PERCENTILES = (2.0, 98.0)
# A constant band has std 0; normalising by it would divide by zero, so the std is floored.
STD_FLOOR = 1e-6
# dtype -> (histogram bins, offset added to a value to get its bin): every value has its own bin.
HISTOGRAM_DTYPES = {"uint8": (256, 0), "uint16": (65536, 0), "int16": (65536, 32768)}
_BAND_FIELDS = ("low", "high", "mean", "std", "valid_pixels")


@dataclass(frozen=True)
class BandStatistics:
    """Statistics of each band read by a ``RasterInput`` over the valid pixels of one split.

    ``bands``, ``count``, ``dtype``: the raster contract they were computed for. ``percentiles``:
    the (low, high) percentiles of the stretch. Per band, in the order of ``bands``: ``low`` and
    ``high``, the percentile values (raw band values, exact); ``mean`` and ``std`` of the
    stretched values ``clip((x - low) / (high - low), 0, 1)``; ``valid_pixels``, the pixels
    counted. ``num_images``: the images read.
    """

    bands: tuple[int, ...]
    count: int
    dtype: str
    percentiles: tuple[float, float]
    low: tuple[int, ...]
    high: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    valid_pixels: tuple[int, ...]
    num_images: int

    def __post_init__(self):
        # Lists (from JSON) and numpy numbers become the declared tuples of plain values, so
        # equality and to_dict do not depend on where the values came from.
        raster = RasterInput(self.bands, self.count, str(self.dtype))
        object.__setattr__(self, "bands", raster.bands)
        object.__setattr__(self, "count", raster.count)
        object.__setattr__(self, "dtype", raster.dtype)
        object.__setattr__(self, "percentiles", check_percentiles(self.percentiles))
        for name in ("low", "high"):
            object.__setattr__(self, name, tuple(_integer(v, name) for v in getattr(self, name)))
        for name in ("mean", "std"):
            object.__setattr__(self, name, tuple(_number(v, name) for v in getattr(self, name)))
        object.__setattr__(
            self, "valid_pixels", tuple(_count(v, "valid_pixels") for v in self.valid_pixels)
        )
        object.__setattr__(self, "num_images", _count(self.num_images, "num_images"))
        for name in _BAND_FIELDS:
            if len(getattr(self, name)) != len(self.bands):
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} values for {len(self.bands)} bands"
                )
        for band, low, high in zip(self.bands, self.low, self.high, strict=True):
            if high <= low:
                raise ValueError(f"band {band}: high {high} is not above low {low}")
        if any(std < 0 for std in self.std):
            raise ValueError(f"std {list(self.std)} holds a negative value")

    @property
    def scaling(self) -> dict:
        """The percentile stretch as ``RasterInput.scaling``: ``{"low": [...], "high": [...]}``."""
        return {"low": [float(v) for v in self.low], "high": [float(v) for v in self.high]}

    @property
    def normalization(self) -> dict:
        """The network's ``normalization`` of the stretched values: ``{"mean": [...], "std":
        [...]}``, each std at least ``STD_FLOOR`` (a constant band would divide by zero)."""
        return {"mean": list(self.mean), "std": [max(std, STD_FLOOR) for std in self.std]}

    def raster_input(self) -> RasterInput:
        """The contract these statistics were computed for, with their percentile stretch."""
        return RasterInput(self.bands, self.count, self.dtype, scaling=self.scaling)

    def computed_for(self, raster: RasterInput, percentiles=DEFAULT_PERCENTILES) -> bool:
        """Whether these are the statistics of ``raster``'s bands, count and dtype (its scaling
        aside) at ``percentiles``."""
        return (self.bands, self.count, self.dtype) == (
            raster.bands,
            raster.count,
            raster.dtype,
        ) and self.percentiles == check_percentiles(percentiles)

    def to_dict(self) -> dict:
        """The statistics as plain JSON values, plus ``scaling`` and ``normalization`` (for
        readers; ``from_dict`` reads the statistics only)."""
        return {
            "bands": list(self.bands),
            "count": self.count,
            "dtype": self.dtype,
            "percentiles": list(self.percentiles),
            "low": list(self.low),
            "high": list(self.high),
            "mean": list(self.mean),
            "std": list(self.std),
            "valid_pixels": list(self.valid_pixels),
            "num_images": self.num_images,
            "scaling": self.scaling,
            "normalization": self.normalization,
        }

    @classmethod
    def from_dict(cls, data: dict) -> "BandStatistics":
        """The statistics from ``to_dict``'s output; a missing or wrong value is a DataError."""
        if not isinstance(data, dict):
            raise DataError(f"expected a JSON object of band statistics, got {type(data).__name__}")
        fields = ("bands", "count", "dtype", "percentiles", *_BAND_FIELDS, "num_images")
        missing = [name for name in fields if name not in data]
        if missing:
            raise DataError(f"band statistics lack {missing}")
        try:
            for name in ("bands", "percentiles", *_BAND_FIELDS):
                if not isinstance(data[name], list):
                    raise ValueError(f"{name} is not a list")
            return cls(**{name: data[name] for name in fields})
        except (TypeError, ValueError) as error:  # ConfigError of the contract included
            raise DataError(f"invalid band statistics: {error}") from error

    def save(self, path: str | os.PathLike) -> None:
        """Write ``to_dict()`` as JSON, atomically (a reader never sees half a file)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike) -> "BandStatistics":
        """Read a file written by ``save``; a missing or invalid file is a DataError naming it."""
        path = Path(path)
        data = read_json_file(
            path,
            "file of band statistics",
            missing="band statistics not found; write them with python -m "
            "geoseg.datasets.stats --root ROOT --split SPLIT --bands 1,2,3,... --dtype DTYPE",
        )
        try:
            return cls.from_dict(data)
        except DataError as error:
            raise DataError(f"{path}: {error}") from error


def check_percentiles(percentiles) -> tuple[float, float]:
    """``(low, high)`` as floats with ``0 <= low < high <= 100``; anything else is a ConfigError."""
    try:
        low, high = (float(p) for p in percentiles)
    except (TypeError, ValueError) as error:
        raise ConfigError(
            f"percentiles={percentiles!r}: expected two numbers (low, high), e.g. (2, 98)"
        ) from error
    if not 0.0 <= low < high <= 100.0:  # also rejects NaN
        raise ConfigError(f"percentiles={percentiles!r}: expected 0 <= low < high <= 100")
    return low, high


def histogram_percentile(histogram: np.ndarray, percentile: float) -> int:
    """The bin of the ``percentile``-th percentile of the values counted in ``histogram``.

    The lowest bin ``v`` such that the share of the counted values at or below ``v`` is at least
    ``percentile / 100`` (the inverse of the empirical distribution function, numpy's
    ``method="inverted_cdf"``); 0 gives the lowest bin holding a value, 100 the highest. Exact:
    integer counts against the percentile as the decimal it is written as.
    """
    cumulative = np.cumsum(histogram, dtype=np.int64)
    total = int(cumulative[-1])
    if total <= 0:
        raise ValueError("no value counted in the histogram")
    # repr gives the shortest decimal of the float, so 0.1 is 1/10 and not 0.1000000000000000055.
    share = Fraction(repr(float(percentile))) / 100
    needed = max(math.ceil(share * total), 1)  # at least one value: 0 is the lowest value held
    return int(np.searchsorted(cumulative, needed, side="left"))


def add_to_histograms(
    histograms: np.ndarray, image: np.ndarray, valid: np.ndarray | None, offset: int = 0
) -> None:
    """Count the valid pixels of ``image`` ((H, W, bands) integers; ``valid`` (H, W) bool, None:
    all) into ``histograms`` ((bands, bins) int64, in place): value ``v`` of band ``b`` goes to
    bin ``v + offset``."""
    pixels = image.reshape(-1, image.shape[-1])
    if valid is not None:
        pixels = pixels[valid.ravel()]
    for band in range(histograms.shape[0]):
        values = pixels[:, band]
        if offset:
            values = values.astype(np.int32) + offset
        histograms[band] += np.bincount(values, minlength=histograms.shape[1])


def histogram_mean_std(histogram: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """Mean and std (population, ``ddof=0``) of the values counted in ``histogram``, bin ``i``
    standing for ``values[i]``; the histogram holds at least one count."""
    total = histogram.sum()
    mean = float((histogram * values).sum() / total)
    variance = float((histogram * (values - mean) ** 2).sum() / total)
    return mean, math.sqrt(variance)


def band_statistics(
    root: str | os.PathLike,
    split: str = "Train",
    *,
    raster: RasterInput | dict,
    percentiles=DEFAULT_PERCENTILES,
    img_dir: str = "images_png",
    output: str | os.PathLike | None = None,
) -> BandStatistics:
    """Statistics of ``raster``'s bands over every image in ``<root>/<split>/<img_dir>``.

    Each image is read with ``read_image_and_valid`` (its band count and dtype checked against
    ``raster``; ``raster.scaling`` is not applied), one at a time, and its valid pixels added to
    one histogram per band with a bin for every value; nodata pixels are left out. ``low`` and
    ``high`` of a band are its ``percentiles`` as ``histogram_percentile`` defines them: the lowest
    value ``v`` such that the share of valid pixels ``<= v`` is at least ``p / 100``. ``mean`` and
    ``std`` (population, ``ddof=0``) are those of ``clip((x - low) / (high - low), 0, 1)`` over
    the valid pixels, computed exactly from the histogram. If ``output`` is given, the statistics
    are saved there as JSON.

    Only uint8, uint16 and int16 rasters have exact histograms; other dtypes are a ConfigError
    (scale them by a divisor instead). A missing or empty folder, or images without a valid pixel,
    are a DataError naming the folder; a raster that does not fit ``raster`` one naming the file.
    """
    raster = _raster_input(raster)
    percentiles = check_percentiles(percentiles)
    if raster.dtype not in HISTOGRAM_DTYPES:
        raise ConfigError(
            f"band statistics of {raster.dtype} rasters: percentiles are computed from exact "
            f"histograms of {', '.join(HISTOGRAM_DTYPES)} values only; scale {raster.dtype} "
            "rasters by a divisor instead (RasterInput(..., scaling={'divisor': d}))"
        )
    bins, offset = HISTOGRAM_DTYPES[raster.dtype]
    folder = Path(root) / split / img_dir
    paths = _image_paths(folder, split, img_dir)
    histograms = np.zeros((raster.in_chans, bins), dtype=np.int64)
    for path in paths:
        add_to_histograms(histograms, *read_image_and_valid(path, raster), offset=offset)
    if histograms[0].sum() == 0:
        raise DataError(
            f"{folder}: no valid pixel in the {len(paths)} images (all are nodata): no band "
            "statistics"
        )
    values = np.arange(bins, dtype=np.float64) - offset
    low, high, mean, std = [], [], [], []
    for histogram in histograms:
        band_low = histogram_percentile(histogram, percentiles[0]) - offset
        band_high = histogram_percentile(histogram, percentiles[1]) - offset
        if band_high == band_low:
            # A (nearly) constant band: a stretch over one more value keeps (x - low) / (high -
            # low) defined and maps the constant to 0.
            band_high = band_low + 1
        scaled = np.clip((values - band_low) / (band_high - band_low), 0.0, 1.0)
        band_mean, band_std = histogram_mean_std(histogram, scaled)
        low.append(band_low)
        high.append(band_high)
        mean.append(band_mean)
        std.append(band_std)
    stats = BandStatistics(
        bands=raster.bands,
        count=raster.count,
        dtype=raster.dtype,
        percentiles=percentiles,
        low=tuple(low),
        high=tuple(high),
        mean=tuple(mean),
        std=tuple(std),
        valid_pixels=tuple(int(h.sum()) for h in histograms),
        num_images=len(paths),
    )
    if output is not None:
        stats.save(output)
    return stats


def band_statistics_cached(
    root: str | os.PathLike,
    split: str = "Train",
    *,
    raster: RasterInput | dict,
    percentiles=DEFAULT_PERCENTILES,
    img_dir: str = "images_png",
) -> BandStatistics:
    """``band_statistics`` in one line of a config, read from ``<root>/<split>/band_statistics.json``
    when that file holds the statistics of the same bands, count, dtype and percentiles over as
    many images as the folder holds now; otherwise computed and saved there.

    Every process imports the config (data loader workers, each GPU's process): the split's images
    are read once, the first time. Edited images of an unchanged count are not noticed: delete the
    file to compute them again.
    """
    raster = _raster_input(raster)
    percentiles = check_percentiles(percentiles)
    path = Path(root) / split / BAND_STATISTICS_FILE
    if path.is_file():
        try:
            stats = BandStatistics.load(path)
        except DataError as error:
            log.warning("%s; computing the band statistics again", error)
        else:
            num_images = len(_image_paths(Path(root) / split / img_dir, split, img_dir))
            if stats.computed_for(raster, percentiles) and stats.num_images == num_images:
                return stats
            log.info(
                "%s: statistics of other bands, percentiles or images; computing them again", path
            )
    log.info("computing the band statistics of %s (saved to %s)", Path(root) / split, path)
    return band_statistics(
        root, split, raster=raster, percentiles=percentiles, img_dir=img_dir, output=path
    )


def format_band_table(stats: BandStatistics) -> str:
    """The statistics as a Markdown table, one row per band, and a line on what they cover."""
    header = ["band", "low", "high", "mean", "std", "valid pixels"]
    rows = [
        [str(band), str(low), str(high), f"{mean:.4f}", f"{std:.4f}", str(valid)]
        for band, low, high, mean, std, valid in zip(
            stats.bands,
            stats.low,
            stats.high,
            stats.mean,
            stats.std,
            stats.valid_pixels,
            strict=True,
        )
    ]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        # Right-aligned, so the digits line up.
        return (
            "| " + " | ".join(cell.rjust(w) for cell, w in zip(cells, widths, strict=True)) + " |"
        )

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    low, high = (f"{p:g}" for p in stats.percentiles)
    footer = (
        f"{stats.num_images} images of {stats.count} {stats.dtype} bands; low, high: "
        f"percentiles {low} and {high} of the valid pixels; mean, std: of the values "
        "stretched to clip((x - low) / (high - low), 0, 1)"
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows), "", footer])


def _raster_input(raster) -> RasterInput:
    raster = RasterInput.of(raster)
    if raster is None:
        raise ConfigError(
            "band statistics need raster=RasterInput(bands=..., count=..., dtype=...): which "
            "bands to read, of which data type"
        )
    return raster


def _image_paths(folder: Path, split: str, img_dir: str) -> list[Path]:
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found; expected the images of split '{split}' as "
            f"<root>/<split>/{img_dir}/<stem>.tif (or another raster format)"
        )
    paths = list(list_files(folder).values())
    if not paths:
        raise DataError(f"{folder}: no images found (expected <stem>.tif rasters)")
    return paths


def _count(value, name: str) -> int:
    # bool is an int subclass, and a float count means a hand-edited or foreign file.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: {value!r} is not a count (a non-negative integer)")
    return int(value)


def _integer(value, name: str) -> int:
    # low and high are raw band values, integers of the raster's dtype.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name}: {value!r} is not an integer band value")
    return int(value)


def _number(value, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise ValueError(f"{name}: {value!r} is not a number")
    if not math.isfinite(value):
        raise ValueError(f"{name}: {value!r} is not finite")
    return float(value)
