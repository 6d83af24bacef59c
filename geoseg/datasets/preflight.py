"""Pre-flight of a combined dataset: does the second domain fit the target before training on both?

    python -m geoseg.datasets.preflight --combined-root data/biodiversity_combined [--target-gsd M]

Reads a build's ``combined_manifest.json`` (its settings: ``oem_root``, ``oem_scale``,
``ignore_index``, ``target_gsd``, and ``label_sets`` where the remap has them) and the masks and
images of its Train split, the ``target_*`` tiles (the target's Train) and the ``oem_*`` tiles
(OpenEarthMap after the remap), and reports:

1. the pixel share of each class on both sides (% of the labelled pixels), and of ignore (% of
   all pixels). A label set (``"label_sets": {"6": [1, 2]}``: mask id 6 means "forest or
   grassland") is a row of its own, named ``forest|grassland``; any other id that is neither a
   class nor ignore is an error naming the mask;
2. the classes a side lacks (0 pixels) or nearly lacks (a share below ``NEAR_ABSENT_PERCENT``);
3. the ground sampling distance (GSD) of each side, where the rasters carry one
   (``geoseg.datasets.io.pixel_size``): the target's from its Train images (PNG tiles carry none:
   give it as ``target_gsd``), OpenEarthMap's from its original rasters under ``oem_root`` (the
   median over up to ``GSD_SAMPLE_SIZE`` of them) divided by the build's ``oem_scale``; and the
   scale that would match them, source GSD / target GSD;
4. the mean and std of each band (0-255) on both sides, over the pixels that hold data (not nodata
   in the image where the file declares it) and a label (not ignore in the mask; the combined PNGs
   keep their nodata only as ignore in the mask).

Warnings: a class (nearly) absent on one side but not on the other; GSDs that differ by more than
``GSD_TOLERANCE`` times either way; OpenEarthMap holding more than ``DOMINANT_SHARE`` of the
combined Train pixels of a class the target has (its look of the class outweighs the target's own:
where negative transfer happens). Matched data gives none. The report is saved as
``<combined_root>/preflight.json`` (with its text); ``create_combined_dataset.py`` runs it after
every build.
"""

import argparse
import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.cli import ArgumentParser, run_script
from geoseg.datasets.combine import MANIFEST_NAME, OEM_PREFIX, TARGET_PREFIX
from geoseg.datasets.io import list_files, pixel_size, read_image_and_valid, read_mask
from geoseg.datasets.openearthmap import locate_pairs, read_split_list
from geoseg.datasets.stats import count_mask_ids
from geoseg.datasets.stats.bands import add_to_histograms, histogram_mean_std
from geoseg.errors import DataError
from geoseg.files import read_json_file, write_text_atomic

PREFLIGHT_FILE = "preflight.json"
NEAR_ABSENT_PERCENT = 0.5  # a class below this share of a side's labelled pixels is nearly absent
GSD_TOLERANCE = 1.5  # GSDs further apart than this factor, either way, are a warning
DOMINANT_SHARE = 0.5  # OpenEarthMap above this share of a target class's pixels is a warning
GSD_SAMPLE_SIZE = 32  # rasters read for a side's GSD, spread evenly over its sorted file names
DOMAINS = {"target": TARGET_PREFIX, "oem": OEM_PREFIX}
DOMAIN_NAMES = {"target": "target", "oem": "OpenEarthMap"}
BAND_NAMES = ("red", "green", "blue")


@dataclass(frozen=True)
class GSDEstimate:
    """A side's ground sampling distance in metres (None: unknown) and where it comes from."""

    metres: float | None
    origin: str  # e.g. "given", "median of 12 georeferenced rasters of 12 sampled"

    def describe(self) -> str:
        if self.metres is None:
            return f"unknown: {self.origin}"
        return f"{self.metres:.3g} m ({self.origin})"

    def to_dict(self) -> dict:
        return {"metres": self.metres, "origin": self.origin}


def estimate_gsd(paths: list[Path], sample_size: int = GSD_SAMPLE_SIZE) -> GSDEstimate:
    """The median GSD (metres) of up to ``sample_size`` of the rasters ``paths``, spread evenly over
    their sorted names. Rasters without a georeference, or unreadable ones, are left out and
    counted; None when no sampled raster has one."""
    paths = sorted(paths)
    if not paths:
        return GSDEstimate(None, "no image to read it from")
    if len(paths) > sample_size:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, sample_size).round().astype(int)]
    sizes, unreadable = [], 0
    for path in paths:
        try:
            sizes.append(pixel_size(path))
        except DataError:
            unreadable += 1
    known = [size for size in sizes if size is not None]
    skipped = f", {unreadable} unreadable" if unreadable else ""
    if not known:
        return GSDEstimate(
            None,
            f"none of the {len(paths)} sampled images carries a georeference (PNG, or a TIFF "
            f"without transform){skipped}",
        )
    origin = f"median of {len(known)} georeferenced of {len(paths)} sampled rasters{skipped}"
    if any(size.from_degrees for size in known):
        origin += "; degrees converted to metres at each raster's centre latitude"
    return GSDEstimate(statistics.median(size.gsd for size in known), origin)


class GSDUnknownError(DataError):
    """A side's GSD is needed but none of its rasters carries one; ``domain``: "target" or "oem"."""

    def __init__(self, domain: str, message: str):
        super().__init__(message)
        self.domain = domain


def auto_oem_scale(
    target_root: str | os.PathLike,
    oem_root: str | os.PathLike,
    target_gsd: float | None = None,
    sample_size: int = GSD_SAMPLE_SIZE,
) -> tuple[float, str]:
    """The OpenEarthMap scale that matches its pixels to the target's, OpenEarthMap GSD / target
    GSD, and why, e.g. ``(0.5, "auto: 0.50 m / 1.00 m")``.

    The target's GSD is ``target_gsd`` (metres) or read from its Train images
    (``<target_root>/Train/images_png``); OpenEarthMap's from the images of its train list. Either
    unknown is a GSDUnknownError naming the side and where it looked.
    """
    folder = Path(target_root) / "Train" / "images_png"
    if target_gsd is not None:
        target = GSDEstimate(float(target_gsd), "given")
    else:
        target = estimate_gsd(list(list_files(folder).values()), sample_size)
    if target.metres is None:
        raise GSDUnknownError(
            "target",
            f"the target's ground sampling distance is unknown: {target.origin} in {folder}",
        )
    pairs, _, _ = locate_pairs(oem_root, read_split_list(oem_root, "train"))
    oem = estimate_gsd([pair.image for pair in pairs], sample_size)
    if oem.metres is None:
        raise GSDUnknownError(
            "oem",
            f"the OpenEarthMap ground sampling distance is unknown: {oem.origin} of its train "
            f"list under {oem_root}",
        )
    return oem.metres / target.metres, f"auto: {oem.metres:.2f} m / {target.metres:.2f} m"


@dataclass
class PreflightReport:
    """What ``run_preflight`` found; ``warnings`` are set by it (``find_warnings``)."""

    combined_root: str
    rows: list[str]  # the classes in id order, then the label sets ("forest|grassland")
    row_ids: list[int]  # the mask id of each row
    row_classes: list[tuple[int, ...]]  # the class ids each row may be: (c,), or a label set's
    pixels: dict[str, list[int]]  # "target"/"oem" -> pixels of each row
    ignored: dict[str, int]  # pixels of the ignore id
    tiles: dict[str, int]
    target_gsd: GSDEstimate
    oem_source_gsd: GSDEstimate  # of the original rasters, before the build's scale
    oem_scale: float
    oem_scale_reason: str
    bands: dict[str, dict]  # side -> {"mean": [...], "std": [...], "pixels": n}
    num_classes: int = len(CLASSES)
    near_absent_percent: float = NEAR_ABSENT_PERCENT
    gsd_tolerance: float = GSD_TOLERANCE
    dominant_share: float = DOMINANT_SHARE
    warnings: list[str] = field(default_factory=list)

    def shares(self, domain: str) -> list[float]:
        """Each row's % of the side's labelled pixels (those of the classes and label sets)."""
        total = sum(self.pixels[domain])
        return [100 * count / total for count in self.pixels[domain]]

    def ignored_percent(self, domain: str) -> float:
        """The ignore id's % of all the side's pixels."""
        return 100 * self.ignored[domain] / (sum(self.pixels[domain]) + self.ignored[domain])

    def lacking(self, domain: str) -> list[str]:
        """The classes whose share on ``domain`` is below ``near_absent_percent`` (0 included)."""
        shares = self.shares(domain)
        return [
            self.rows[c] for c in range(self.num_classes) if shares[c] < self.near_absent_percent
        ]

    def oem_fraction(self, row: int) -> float | None:
        """OpenEarthMap's fraction of the combined Train pixels of ``row``; None without any."""
        total = self.pixels["target"][row] + self.pixels["oem"][row]
        return self.pixels["oem"][row] / total if total else None

    @property
    def oem_gsd(self) -> float | None:
        """OpenEarthMap's GSD in the combined tiles: the source's divided by the build's scale."""
        source = self.oem_source_gsd.metres
        return None if source is None else source / self.oem_scale

    @property
    def matching_scale(self) -> float | None:
        """The ``oem_scale`` that would give OpenEarthMap the target's GSD."""
        source, target = self.oem_source_gsd.metres, self.target_gsd.metres
        return None if source is None or target is None else source / target

    def text(self) -> str:
        """The report as printed: tables, then one ``WARNING:`` line per warning."""
        name = DOMAIN_NAMES["oem"]
        lines = [
            f"pre-flight of {self.combined_root}: Train holds {self.tiles['target']} target "
            f"tiles and {self.tiles['oem']} {name} tiles",
            f"class shares (% of labelled pixels; {name} after the remap; ignore: % of all):",
        ]
        header = ("class", "target %", f"{name} %", f"{name} of the class's pixels %")
        table = [header]
        shares = {domain: self.shares(domain) for domain in DOMAINS}
        for row, row_name in enumerate(self.rows):
            fraction = self.oem_fraction(row)
            table.append(
                (
                    row_name,
                    f"{shares['target'][row]:.2f}",
                    f"{shares['oem'][row]:.2f}",
                    "-" if fraction is None else f"{100 * fraction:.1f}",
                )
            )
        table.append(
            (
                "ignore",
                f"{self.ignored_percent('target'):.2f}",
                f"{self.ignored_percent('oem'):.2f}",
                "",
            )
        )
        lines += _aligned(table)
        lines.append(f"classes lacking (share below {self.near_absent_percent:g}%):")
        for domain in DOMAINS:
            lacking = self.lacking(domain)
            lines.append(f"  {DOMAIN_NAMES[domain]}: {', '.join(lacking) if lacking else 'none'}")
        lines.append("ground sampling distance:")
        lines.append(f"  target: {self.target_gsd.describe()}")
        if self.oem_gsd is None:
            lines.append(f"  {name}: {self.oem_source_gsd.describe()}")
        else:
            lines.append(
                f"  {name}: {self.oem_gsd:.3g} m in the combined tiles = source "
                f"{self.oem_source_gsd.describe()} / scale {self.oem_scale:g} "
                f"({self.oem_scale_reason})"
            )
        if self.matching_scale is None:
            lines.append("  scale that would match them: unknown (a GSD is unknown)")
        else:
            lines.append(f"  scale that would match them: {self.matching_scale:.3g}")
        lines.append("band mean / std (0-255, over pixels with data and a label):")
        table = [("band", "target", name)]
        for band, band_name in enumerate(BAND_NAMES):
            table.append((band_name, *(_mean_std(self.bands[domain], band) for domain in DOMAINS)))
        lines += _aligned(table)
        lines += [f"WARNING: {warning}" for warning in self.warnings]
        if not self.warnings:
            lines.append("no warnings")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """The report as plain JSON values, its text included."""
        shares = {domain: self.shares(domain) for domain in DOMAINS}
        return {
            "combined_root": self.combined_root,
            "tiles": self.tiles,
            "classes": [
                {
                    "name": row_name,
                    "id": self.row_ids[row],
                    "label_set": row >= self.num_classes,
                    **{f"{domain}_pixels": self.pixels[domain][row] for domain in DOMAINS},
                    **{f"{domain}_percent": shares[domain][row] for domain in DOMAINS},
                    "oem_fraction": self.oem_fraction(row),
                }
                for row, row_name in enumerate(self.rows)
            ],
            "ignore": {
                **{f"{domain}_pixels": self.ignored[domain] for domain in DOMAINS},
                **{f"{domain}_percent_of_all": self.ignored_percent(domain) for domain in DOMAINS},
            },
            "near_absent_percent": self.near_absent_percent,
            "lacking": {domain: self.lacking(domain) for domain in DOMAINS},
            "gsd": {
                "target": self.target_gsd.to_dict(),
                "oem_source": self.oem_source_gsd.to_dict(),
                "oem": self.oem_gsd,
                "oem_scale": self.oem_scale,
                "oem_scale_reason": self.oem_scale_reason,
                "matching_oem_scale": self.matching_scale,
                "tolerance": self.gsd_tolerance,
            },
            "bands": {"names": list(BAND_NAMES), **self.bands},
            "dominant_share": self.dominant_share,
            "warnings": list(self.warnings),
            "text": self.text(),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write ``to_dict()`` as JSON, atomically through a temporary file of this process."""
        write_text_atomic(path, json.dumps(self.to_dict(), indent=2) + "\n")


def find_warnings(report: PreflightReport) -> list[str]:
    """The mismatches of ``report`` worth a look before training, one sentence each."""
    warnings = []
    shares = {domain: report.shares(domain) for domain in DOMAINS}
    threshold = report.near_absent_percent
    for c in range(report.num_classes):
        for lacking, other in (("target", "oem"), ("oem", "target")):
            share, other_share = shares[lacking][c], shares[other][c]
            if share < threshold <= other_share:
                how = "absent (0 pixels)" if share == 0 else f"nearly absent ({share:.2f}%)"
                warnings.append(
                    f"class '{report.rows[c]}' is {how} in the {DOMAIN_NAMES[lacking]} tiles but "
                    f"{other_share:.2f}% of the {DOMAIN_NAMES[other]} pixels"
                    + _label_set_note(report, lacking, c)
                )
    target, oem = report.target_gsd.metres, report.oem_gsd
    if target is not None and oem is not None:
        ratio = max(oem / target, target / oem)
        if ratio > report.gsd_tolerance:
            warnings.append(
                f"ground sampling distances differ {ratio:.2f}x (more than "
                f"{report.gsd_tolerance:g}x): target {target:.3g} m, OpenEarthMap {oem:.3g} m in "
                f"the combined tiles (scale {report.oem_scale:g}); an OpenEarthMap scale of "
                f"{report.matching_scale:.3g} would match them"
            )
    for c in range(report.num_classes):
        fraction = report.oem_fraction(c)
        if report.pixels["target"][c] and fraction > report.dominant_share:
            warnings.append(
                f"OpenEarthMap holds {100 * fraction:.1f}% of the combined Train pixels of "
                f"'{report.rows[c]}' ({report.pixels['oem'][c]} of "
                f"{report.pixels['oem'][c] + report.pixels['target'][c]}): its look of the class "
                "outweighs the target's own (risk of negative transfer)"
            )
    return warnings


def run_preflight(
    combined_root: str | os.PathLike,
    target_gsd: float | None = None,
    *,
    near_absent_percent: float = NEAR_ABSENT_PERCENT,
    gsd_tolerance: float = GSD_TOLERANCE,
    dominant_share: float = DOMINANT_SHARE,
    sample_size: int = GSD_SAMPLE_SIZE,
    progress: bool = False,
) -> PreflightReport:
    """The pre-flight of the combined build at ``combined_root`` (see the module's docstring).

    ``target_gsd`` (metres) overrides the manifest's and the target rasters'. A missing or invalid
    manifest, a Train split without tiles of a side or without a labelled pixel, and a mask id that
    is neither a class, ignore nor a label set are DataErrors naming the file or folder.
    """
    if not near_absent_percent >= 0:
        raise DataError(f"near_absent_percent must be a percentage >= 0, got {near_absent_percent}")
    root = Path(combined_root)
    manifest_path = root / MANIFEST_NAME
    settings = _read_settings(root, manifest_path)
    ignore_index = _setting(settings, "ignore_index", int, manifest_path, IGNORE_INDEX)
    oem_scale = _setting(settings, "oem_scale", float, manifest_path)
    if not oem_scale > 0:
        raise DataError(f"{manifest_path}: oem_scale must be positive, got {oem_scale}")
    label_sets = _label_sets(settings, manifest_path, ignore_index)
    tiles = _train_tiles(root)

    pixels, ignored, bands, counted = {}, {}, {}, {}
    for domain in DOMAINS:
        extra = tuple(label_sets) if domain == "oem" else ()
        counts, histograms = _count_tiles(tiles[domain], ignore_index, extra, progress, domain)
        if counts[: len(CLASSES)].sum() + counts[list(extra)].sum() == 0:
            raise DataError(
                f"{root / 'Train/masks_png'}: no labelled pixel in the {len(tiles[domain])} "
                f"{DOMAINS[domain]}* masks (all are {ignore_index}, ignore)"
            )
        pixels[domain] = [int(counts[i]) for i in (*range(len(CLASSES)), *label_sets)]
        ignored[domain] = int(counts[ignore_index])
        bands[domain] = _band_summary(histograms)
        counted[domain] = len(tiles[domain])

    given, where = target_gsd, "target_gsd"
    if given is None:
        given, where = settings.get("target_gsd"), f"{manifest_path}: settings 'target_gsd'"
    if given is not None:
        if isinstance(given, bool) or not isinstance(given, (int, float)) or not given > 0:
            raise DataError(f"{where} is {given!r}; expected a positive number of metres")
        target = GSDEstimate(float(given), "given")
    else:
        target = estimate_gsd([image for image, _ in tiles["target"]], sample_size)
    report = PreflightReport(
        combined_root=str(root),
        rows=[*CLASSES, *("|".join(CLASSES[c] for c in ids) for ids in label_sets.values())],
        row_ids=[*range(len(CLASSES)), *label_sets],
        row_classes=[*((c,) for c in range(len(CLASSES))), *label_sets.values()],
        pixels=pixels,
        ignored=ignored,
        tiles=counted,
        target_gsd=target,
        oem_source_gsd=_oem_source_gsd(settings, tiles["oem"], sample_size),
        oem_scale=oem_scale,
        oem_scale_reason=str(settings.get("oem_scale_reason", "as given")),
        bands=bands,
        near_absent_percent=near_absent_percent,
        gsd_tolerance=gsd_tolerance,
        dominant_share=dominant_share,
    )
    report.warnings = find_warnings(report)
    return report


# --- helpers ------------------------------------------------------------------------------------


def _read_settings(root: Path, manifest_path: Path) -> dict:
    if not root.is_dir():
        raise DataError(
            f"{root}: combined dataset folder not found; expected the output root of a "
            "combined-dataset build (create_combined_dataset.py)"
        )
    manifest = read_json_file(
        manifest_path,
        "manifest",
        missing=f"manifest not found; {root} was not written by a combined-dataset build "
        "(create_combined_dataset.py), or the build did not finish",
    )
    settings = manifest.get("settings") if isinstance(manifest, dict) else None
    if not isinstance(settings, dict):
        raise DataError(f"{manifest_path}: expected a JSON object with a 'settings' object")
    if "label_sets" not in settings and "label_sets" in manifest:
        settings = {**settings, "label_sets": manifest["label_sets"]}
    return settings


def _setting(settings: dict, key: str, kind: type, manifest_path: Path, default=None):
    value = settings.get(key, default)
    if value is None:
        raise DataError(f"{manifest_path}: settings lack '{key}'")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or kind(value) != value:
        raise DataError(f"{manifest_path}: settings '{key}' is {value!r}; expected {kind.__name__}")
    return kind(value)


def _label_sets(settings: dict, manifest_path: Path, ignore_index: int) -> dict[int, tuple]:
    """Mask id -> the class ids it may be, from the manifest's ``label_sets`` (none: {})."""
    raw = settings.get("label_sets") or {}
    expected = (
        f"expected 'label_sets' as {{mask id: [two or more class ids]}} with mask ids "
        f"{len(CLASSES)}..255 other than {ignore_index} and class ids 0..{len(CLASSES) - 1}"
    )
    if not isinstance(raw, dict):
        raise DataError(f"{manifest_path}: 'label_sets' is {raw!r}; {expected}")
    label_sets = {}
    for key, ids in raw.items():
        try:
            mask_id = int(key)
        except (TypeError, ValueError):
            raise DataError(f"{manifest_path}: label set id {key!r}; {expected}") from None
        valid_ids = isinstance(ids, list) and all(
            isinstance(c, int) and not isinstance(c, bool) and 0 <= c < len(CLASSES) for c in ids
        )
        if (
            not len(CLASSES) <= mask_id <= 255
            or mask_id == ignore_index
            or not valid_ids
            or len(set(ids)) < 2
        ):
            raise DataError(f"{manifest_path}: label set {key!r}: {ids!r}; {expected}")
        label_sets[mask_id] = tuple(ids)
    return dict(sorted(label_sets.items()))


def _train_tiles(root: Path) -> dict[str, list[tuple[Path, Path]]]:
    """Side -> (image, mask) of its tiles in ``<root>/Train``, paired by stem."""
    image_dir, mask_dir = root / "Train" / "images_png", root / "Train" / "masks_png"
    images, masks = list_files(image_dir), list_files(mask_dir)
    tiles = {}
    for domain, prefix in DOMAINS.items():
        stems = [stem for stem in masks if stem.startswith(prefix)]
        if not stems:
            raise DataError(
                f"{mask_dir}: no {DOMAIN_NAMES[domain]} tiles (masks named {prefix}*); expected "
                "the Train split of a combined-dataset build"
            )
        missing = [stem for stem in stems if stem not in images]
        if missing:
            raise DataError(f"{masks[missing[0]]}: no image of the same stem in {image_dir}")
        tiles[domain] = [(images[stem], masks[stem]) for stem in stems]
    return tiles


def _count_tiles(
    tiles: list[tuple[Path, Path]],
    ignore_index: int,
    extra_ids: tuple[int, ...],
    progress: bool,
    domain: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(256,) pixels of each mask id, and (3, 256) histograms of the bands over the pixels with
    data and a label, of ``tiles``."""
    counts = np.zeros(256, dtype=np.int64)
    histograms = np.zeros((len(BAND_NAMES), 256), dtype=np.int64)
    bar = dict(desc=f"pre-flight, {DOMAIN_NAMES[domain]} tiles", unit="tile", disable=not progress)
    for image_path, mask_path in tqdm(tiles, **bar):
        mask = read_mask(mask_path)
        counts += count_mask_ids(mask_path, mask, len(CLASSES), ignore_index, extra_ids)
        image, valid = read_image_and_valid(image_path)
        if image.shape[:2] != mask.shape:
            raise DataError(
                f"{mask_path}: mask size {mask.shape[::-1]} differs from its image "
                f"{image_path} {image.shape[1::-1]}"
            )
        labelled = mask != ignore_index
        add_to_histograms(histograms, image, labelled if valid is None else labelled & valid)
    return counts, histograms


def _band_summary(histograms: np.ndarray) -> dict:
    pixels = int(histograms[0].sum())
    if pixels == 0:
        return {"mean": None, "std": None, "pixels": 0}
    values = np.arange(histograms.shape[1], dtype=np.float64)
    moments = [histogram_mean_std(histogram, values) for histogram in histograms]
    return {"mean": [m for m, _ in moments], "std": [s for _, s in moments], "pixels": pixels}


def _oem_source_gsd(
    settings: dict, oem_tiles: list[tuple[Path, Path]], sample_size: int
) -> GSDEstimate:
    """The GSD of the original OpenEarthMap rasters of the build's tiles (of its whole train
    list where none of them is found); unknown, with the reason, when the release is gone."""
    root = settings.get("oem_root")
    if not isinstance(root, str):
        return GSDEstimate(None, "the manifest names no oem_root")
    try:
        pairs, _, _ = locate_pairs(root, read_split_list(root, "train"))
    except DataError as error:
        return GSDEstimate(None, str(error))
    built = {mask.stem.removeprefix(OEM_PREFIX) for _, mask in oem_tiles}
    images = [pair.image for pair in pairs if pair.stem in built] or [p.image for p in pairs]
    return estimate_gsd(images, sample_size)


def _label_set_note(report: PreflightReport, domain: str, c: int) -> str:
    """For a class that label sets may hold, how much of the side they cover."""
    shares = report.shares(domain)
    rows = [
        row
        for row in range(report.num_classes, len(report.rows))
        if c in report.row_classes[row] and shares[row] > 0
    ]
    if not rows:
        return ""
    return (
        " (label sets that may be it: "
        + ", ".join(f"{report.rows[row]} {shares[row]:.2f}%" for row in rows)
        + ")"
    )


def _mean_std(summary: dict, band: int) -> str:
    if summary["mean"] is None:
        return "no labelled pixel"
    return f"{summary['mean'][band]:.1f} / {summary['std'][band]:.1f}"


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells as lines: the first column left-aligned, the others right-aligned."""
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return [
        "  "
        + "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in table
    ]


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="python -m geoseg.datasets.preflight",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--combined-root", type=Path, required=True, help="output root of a combined build"
    )
    parser.add_argument(
        "--target-gsd",
        type=float,
        help="the target's ground sampling distance in metres (default: the build's, or read "
        "from the target rasters; PNG tiles carry none)",
    )
    parser.add_argument(
        "--near-absent",
        type=float,
        default=NEAR_ABSENT_PERCENT,
        help=f"a class below this %% of a side's labelled pixels is nearly absent "
        f"(default {NEAR_ABSENT_PERCENT:g})",
    )
    parser.add_argument(
        "--output", type=Path, help=f"JSON file to write (default <combined-root>/{PREFLIGHT_FILE})"
    )
    args = parser.parse_args(argv)
    if args.target_gsd is not None and not args.target_gsd > 0:
        parser.error(f"--target-gsd {args.target_gsd}: expected a positive number of metres")
    report = run_preflight(
        args.combined_root, args.target_gsd, near_absent_percent=args.near_absent, progress=True
    )
    print(report.text())
    if report.target_gsd.metres is None:
        print("(give the target's GSD with --target-gsd METRES to compare the resolutions)")
    output = args.output or args.combined_root / PREFLIGHT_FILE
    report.save(output)
    print(f"wrote {output}")


if __name__ == "__main__":
    run_script(main)
