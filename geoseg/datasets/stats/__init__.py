"""Class statistics of a split of the target layout, and class weights for the losses.

    python -m geoseg.datasets.stats --root data/biodiversity --split Train

Counts the labelled pixels of each class over the split's masks (``<root>/<split>/masks_png``) and
the tiles containing each class, prints a table with the weights of every scheme in
``WEIGHT_SCHEMES`` (scaled to a mean of 1 over the classes present; a class without any pixel
gets 0 and shows as "absent") and saves the counts as JSON (default
``<root>/<split>/class_statistics.json``). A config then loads the weights without reading the
masks again::

    class_weights = ClassStatistics.load("data/biodiversity/Train/class_statistics.json").weights(
        "median_frequency"
    )

With ``--bands`` (e.g. ``--bands 1,2,3,4 --dtype uint16``) it computes band statistics instead:
the percentiles and mean/std of each band over the valid pixels of the split's images
(``<root>/<split>/images_png``), saved as ``<root>/<split>/band_statistics.json``; they give a
multi-band or 16-bit model its scaling and normalisation (``geoseg.datasets.stats.bands``).
"""

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.datasets.io import list_files, read_mask
from geoseg.datasets.stats.bands import BAND_STATISTICS_FILE as BAND_STATISTICS_FILE
from geoseg.datasets.stats.bands import BandStatistics as BandStatistics
from geoseg.datasets.stats.bands import band_statistics as band_statistics
from geoseg.datasets.stats.bands import band_statistics_cached as band_statistics_cached
from geoseg.datasets.stats.bands import format_band_table as format_band_table
from geoseg.errors import ConfigError, DataError
from geoseg.files import read_json_file, write_text_atomic

WEIGHT_SCHEMES = (
    "inverse_frequency",
    "inverse_sqrt_frequency",
    "median_frequency",
    "effective_number",
)
STATISTICS_FILE = "class_statistics.json"
_COUNT_FIELDS = ("pixel_counts", "tile_counts", "present_tile_pixels")


@dataclass(frozen=True)
class ClassStatistics:
    """Pixel and tile counts of each class over the masks of one split.

    ``pixel_counts[c]``: labelled pixels of class ``c``; ``tile_counts[c]``: tiles containing at
    least one pixel of ``c``; ``present_tile_pixels[c]``: labelled pixels of those tiles (the
    denominator of the median-frequency scheme); ``ignored_pixels``: pixels of the ignore id.
    """

    classes: tuple[str, ...]
    pixel_counts: tuple[int, ...]
    tile_counts: tuple[int, ...]
    present_tile_pixels: tuple[int, ...]
    num_tiles: int
    ignored_pixels: int

    def __post_init__(self):
        # Normalise lists (from JSON) and numpy integers to the declared tuple-of-int types, so
        # equality and to_dict do not depend on where the values came from.
        object.__setattr__(self, "classes", tuple(str(name) for name in self.classes))
        for name in _COUNT_FIELDS:
            object.__setattr__(
                self, name, tuple(_count(value, name) for value in getattr(self, name))
            )
        object.__setattr__(self, "num_tiles", _count(self.num_tiles, "num_tiles"))
        object.__setattr__(self, "ignored_pixels", _count(self.ignored_pixels, "ignored_pixels"))
        for name in _COUNT_FIELDS:
            if len(getattr(self, name)) != len(self.classes):
                raise ValueError(
                    f"{name} has {len(getattr(self, name))} values for {len(self.classes)} classes"
                )
        for c, name in enumerate(self.classes):
            if self.tile_counts[c] > self.num_tiles:
                raise ValueError(
                    f"class '{name}' is in more tiles than the {self.num_tiles} counted"
                )
            if self.present_tile_pixels[c] < self.pixel_counts[c]:
                raise ValueError(
                    f"class '{name}': present_tile_pixels is below its own pixel count"
                )

    @property
    def labelled_pixels(self) -> int:
        """Pixels of any class (all pixels but the ignored ones)."""
        return sum(self.pixel_counts)

    def pixel_shares(self) -> tuple[float, ...]:
        """Each class's fraction of the labelled pixels; they sum to 1."""
        total = self._labelled_or_raise()
        return tuple(count / total for count in self.pixel_counts)

    def tile_shares(self) -> tuple[float, ...]:
        """Each class's fraction of the tiles that contain at least one of its pixels."""
        if self.num_tiles == 0:
            raise DataError("class statistics of no tile: no tile shares")
        return tuple(count / self.num_tiles for count in self.tile_counts)

    def weights(
        self, scheme: str = "inverse_sqrt_frequency", *, beta: float | None = None
    ) -> tuple[float, ...]:
        """One weight per class for a weighted loss (e.g. ``CEDiceLoss(class_weights=...)``).

        With ``f_c`` the pixel share and ``n_c`` the pixel count of class ``c``:

        - ``inverse_frequency``: ``1 / f_c``;
        - ``inverse_sqrt_frequency``: ``1 / sqrt(f_c)``, a milder balance;
        - ``median_frequency`` (Eigen & Fergus 2015): ``median(freq) / freq_c``, where ``freq_c`` is
          ``n_c`` over the labelled pixels of the tiles containing ``c`` and the median is over the
          present classes (the mean of the middle two for an even number);
        - ``effective_number`` (Cui et al. 2019, pixels as samples): ``1 / E_c`` with
          ``E_c = (1 - beta**n_c) / (1 - beta)``; ``beta`` in [0, 1) defaults to ``1 - 1/N``
          (``N`` the labelled pixels), since a fixed beta such as 0.9999 gives every class of
          millions of pixels the same weight. ``beta`` applies to this scheme only.

        The weights of the present classes (``n_c > 0``) are scaled to a mean of 1; an absent class
        gets 0.0 (it has no pixel to weigh). An unknown scheme or a bad ``beta`` is a ValueError;
        statistics without any labelled pixel are a DataError.
        """
        if scheme not in WEIGHT_SCHEMES:
            raise ConfigError(
                f"unknown class-weight scheme {scheme!r}; expected one of {WEIGHT_SCHEMES}"
            )
        if beta is not None and scheme != "effective_number":
            raise ConfigError(f"beta applies to the effective_number scheme only, not {scheme!r}")
        total = self._labelled_or_raise()
        counts = np.asarray(self.pixel_counts, dtype=np.float64)
        present = counts > 0
        n = counts[present]
        if scheme == "inverse_frequency":
            raw = total / n
        elif scheme == "inverse_sqrt_frequency":
            raw = np.sqrt(total / n)
        elif scheme == "median_frequency":
            freq = n / np.asarray(self.present_tile_pixels, dtype=np.float64)[present]
            raw = np.median(freq) / freq
        else:
            raw = _inverse_effective_number(n, total, beta)
        weights = np.zeros(len(self.classes), dtype=np.float64)
        weights[present] = raw / raw.mean()
        return tuple(float(w) for w in weights)

    def to_dict(self) -> dict:
        """The counts as plain JSON values, plus the shares and every scheme's weights (for
        readers; ``from_dict`` reads the counts only)."""
        return {
            "classes": list(self.classes),
            "pixel_counts": list(self.pixel_counts),
            "tile_counts": list(self.tile_counts),
            "present_tile_pixels": list(self.present_tile_pixels),
            "num_tiles": self.num_tiles,
            "ignored_pixels": self.ignored_pixels,
            "labelled_pixels": self.labelled_pixels,
            "pixel_shares": list(self.pixel_shares()),
            "tile_shares": list(self.tile_shares()),
            "effective_number_beta": 1.0 - 1.0 / self.labelled_pixels,
            "weights": {scheme: list(self.weights(scheme)) for scheme in WEIGHT_SCHEMES},
        }

    @classmethod
    def from_dict(cls, data: dict) -> "ClassStatistics":
        """The statistics from ``to_dict``'s output; a missing or wrong value is a DataError."""
        if not isinstance(data, dict):
            raise DataError(
                f"expected a JSON object of class statistics, got {type(data).__name__}"
            )
        fields = ("classes", *_COUNT_FIELDS, "num_tiles", "ignored_pixels")
        missing = [name for name in fields if name not in data]
        if missing:
            raise DataError(f"class statistics lack {missing}")
        try:
            for name in ("classes", *_COUNT_FIELDS):
                if not isinstance(data[name], list):
                    raise ValueError(f"{name} is not a list")
            return cls(**{name: data[name] for name in fields})
        except (TypeError, ValueError) as error:
            raise DataError(f"invalid class statistics: {error}") from error

    def save(self, path: str | os.PathLike) -> None:
        """Write ``to_dict()`` as JSON, atomically (a reader never sees half a file)."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(
        cls, path: str | os.PathLike, classes: tuple[str, ...] | None = None
    ) -> "ClassStatistics":
        """Read a file written by ``save``; a missing or invalid file, or one of other classes
        than ``classes`` (when given), is a DataError naming it."""
        path = Path(path)
        data = read_json_file(
            path,
            "file of class statistics",
            missing="class statistics not found; write them with "
            "python -m geoseg.datasets.stats --root ROOT --split SPLIT",
        )
        try:
            stats = cls.from_dict(data)
        except DataError as error:
            raise DataError(f"{path}: {error}") from error
        if classes is not None and tuple(classes) != stats.classes:
            raise DataError(
                f"{path}: statistics of the classes {', '.join(stats.classes)}; expected "
                f"{', '.join(classes)} (write them with --classes)"
            )
        return stats

    def _labelled_or_raise(self) -> int:
        total = self.labelled_pixels
        if total == 0:
            raise DataError(
                f"no labelled pixel in the {self.num_tiles} tiles (all {self.ignored_pixels} are "
                "ignore): no class shares or weights"
            )
        return total


def _count(value, name: str) -> int:
    # bool is an int subclass, and a float count means a hand-edited or foreign file.
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: {value!r} is not a count (a non-negative integer)")
    return int(value)


def _inverse_effective_number(n: np.ndarray, total: int, beta: float | None) -> np.ndarray:
    """``1 / E`` with ``E = (1 - beta**n) / (1 - beta)``, in float64 without cancellation."""
    if beta is None:
        one_minus_beta = 1.0 / total
    else:
        if isinstance(beta, bool) or not isinstance(beta, (int, float, np.floating)):
            raise ConfigError(f"beta must be a number in [0, 1), got {beta!r}")
        if not 0.0 <= beta < 1.0:  # also rejects NaN
            raise ConfigError(f"beta must be in [0, 1), got {beta!r}")
        one_minus_beta = 1.0 - float(beta)
    # beta**n = exp(n * log(beta)); log1p(-(1 - beta)) keeps the digits of a beta close to 1, and
    # -expm1 keeps those of 1 - beta**n when n * log(beta) is tiny. beta = 0 gives log = -inf and
    # E = 1 for every present class, as 0**n = 0 for n >= 1.
    with np.errstate(divide="ignore"):
        log_beta = np.log1p(-one_minus_beta)
    effective = -np.expm1(n * log_beta) / one_minus_beta
    return 1.0 / effective


def class_statistics(
    root: str | os.PathLike,
    split: str = "Train",
    *,
    classes: tuple[str, ...] = CLASSES,
    ignore_index: int = IGNORE_INDEX,
    mask_dir: str = "masks_png",
) -> ClassStatistics:
    """Count the classes of every mask in ``<root>/<split>/<mask_dir>``.

    Masks hold class ids ``0..len(classes)-1`` or ``ignore_index``; any other value is a DataError
    naming the file, as are a missing folder, a folder without masks and masks without any
    labelled pixel.
    """
    num_classes = len(classes)
    if not 0 < num_classes <= 255:
        raise ConfigError(f"{num_classes} classes; masks of uint8 ids hold 1 to 255 classes")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, (int, np.integer)):
        raise ConfigError(f"ignore_index must be an integer id, got {ignore_index!r}")
    if not num_classes <= ignore_index <= 255:
        raise ConfigError(
            f"ignore_index {ignore_index!r} must be a uint8 id outside the class ids "
            f"0..{num_classes - 1} (default {IGNORE_INDEX})"
        )
    folder = Path(root) / split / mask_dir
    if not folder.is_dir():
        raise DataError(
            f"{folder}: folder not found; expected the masks of split '{split}' as "
            f"<root>/<split>/{mask_dir}/<stem>.png (one channel, uint8 class ids)"
        )
    paths = list_files(folder)
    if not paths:
        raise DataError(f"{folder}: no masks found (expected <stem>.png files of class ids)")
    pixel_counts = np.zeros(num_classes, dtype=np.int64)
    tile_counts = np.zeros(num_classes, dtype=np.int64)
    present_tile_pixels = np.zeros(num_classes, dtype=np.int64)
    ignored = 0
    for path in paths.values():
        counts = count_mask_ids(path, read_mask(path), num_classes, ignore_index)
        class_counts = counts[:num_classes]
        present = class_counts > 0
        pixel_counts += class_counts
        tile_counts += present
        present_tile_pixels += present * class_counts.sum()
        ignored += int(counts[ignore_index])
    if pixel_counts.sum() == 0:
        raise DataError(
            f"{folder}: no labelled pixel in the {len(paths)} masks (all are {ignore_index}, ignore)"
        )
    return ClassStatistics(
        classes=tuple(classes),
        pixel_counts=tuple(pixel_counts.tolist()),
        tile_counts=tuple(tile_counts.tolist()),
        present_tile_pixels=tuple(present_tile_pixels.tolist()),
        num_tiles=len(paths),
        ignored_pixels=ignored,
    )


def count_mask_ids(
    path: str | os.PathLike,
    mask: np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    extra_ids: Iterable[int] = (),
) -> np.ndarray:
    """(256,) int64: the pixels of each id in ``mask`` ((H, W) uint8, read from ``path``).

    Ids other than the class ids ``0..num_classes-1``, ``ignore_index`` and ``extra_ids`` (e.g. the
    ids of label sets) are a DataError naming ``path``.
    """
    # One pass over the mask gives every count of the tile; the rest is on 256 numbers.
    counts = np.bincount(mask.ravel(), minlength=256)
    extra_ids = sorted(set(extra_ids))
    allowed = np.zeros(256, dtype=bool)
    allowed[:num_classes] = True
    allowed[ignore_index] = True
    allowed[extra_ids] = True
    if counts[~allowed].any():
        bad = np.flatnonzero(counts * ~allowed).tolist()
        label_sets = f" or the label-set ids {extra_ids}" if extra_ids else ""
        raise DataError(
            f"{path}: mask values {bad} are not class ids; expected 0..{num_classes - 1} "
            f"or {ignore_index} (ignore){label_sets}"
        )
    return counts


def class_weights(
    root: str | os.PathLike, split: str = "Train", scheme: str = "inverse_sqrt_frequency", **kwargs
) -> tuple[float, ...]:
    """``class_statistics(root, split, **kwargs).weights(scheme)``: weights in one line of a config
    (reads every mask; ``ClassStatistics.load`` reads a saved count instead)."""
    return class_statistics(root, split, **kwargs).weights(scheme)


def format_table(stats: ClassStatistics) -> str:
    """The statistics as a Markdown table, one row per class, and a line of totals."""
    header = ["class", "pixels", "pixels %", "tiles", "tiles %", *WEIGHT_SCHEMES]
    weights = {scheme: stats.weights(scheme) for scheme in WEIGHT_SCHEMES}
    pixel_shares, tile_shares = stats.pixel_shares(), stats.tile_shares()
    rows = []
    for c, name in enumerate(stats.classes):
        absent = stats.pixel_counts[c] == 0
        rows.append(
            [
                name,
                str(stats.pixel_counts[c]),
                f"{100 * pixel_shares[c]:.2f}",
                str(stats.tile_counts[c]),
                f"{100 * tile_shares[c]:.2f}",
                *("absent" if absent else f"{weights[s][c]:.3f}" for s in WEIGHT_SCHEMES),
            ]
        )
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]

    def line(cells):
        # Names left-aligned, numbers right-aligned, so the digits line up.
        padded = [cells[0].ljust(widths[0])]
        padded += [cell.rjust(width) for cell, width in zip(cells[1:], widths[1:], strict=True)]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    total = stats.labelled_pixels + stats.ignored_pixels
    footer = (
        f"{stats.num_tiles} tiles, {stats.labelled_pixels} labelled pixels, "
        f"{stats.ignored_pixels} ignored pixels ({100 * stats.ignored_pixels / total:.2f}% of all)"
    )
    return "\n".join([line(header), rule, *(line(row) for row in rows), "", footer])
