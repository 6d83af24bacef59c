"""Building the combined layout: target tiles (linked) + OpenEarthMap tiles (converted, remapped).

Output::

    <output>/Train/images_png/target_<stem>.png -> link to <target>/Train/images_png/<stem>.png
    <output>/Train/masks_png/target_<stem>.png  -> link to <target>/Train/masks_png/<stem>.png
    <output>/Train/images_png/oem_<stem>.png       OpenEarthMap train image, as PNG (optionally rescaled)
    <output>/Train/masks_png/oem_<stem>.png        its label remapped to the target classes
    <output>/Val/{images_png,masks_png}/oem_<stem>.png   the same for OpenEarthMap val
    <output>/combined_manifest.json                settings and counts of the build

The build goes to a temporary sibling folder of its own that replaces the output only once
complete, so an interrupted run leaves the previous output intact, a re-run leaves no stale files,
and two builds of one output at once never write into one folder (the last to finish stays,
whole). Sources are only read.

Links: every ``target_*`` link is relative and lands on the file as listed under the target root
(folders resolved, the file itself not); a link that would land outside the target root is an
error. A target file that is itself a link (data kept on other storage) is linked as it is and
followed when read, as it would be in the target folder. Cleaning a previous build deletes links,
never what they point to, and an output root given as a link is built beside its real folder.

Label sets: a remap entry may send a source class to a set of target classes ("rangeland is
forest or grassland"; see ``geoseg.datasets.openearthmap``). Train masks hold such pixels as the
set's own id (``num_classes + k``), which the partial-label loss reads as "one of these"; Val
masks, which are scored, hold them as ignore: a pixel that is "one of these" cannot be scored as
one class. The manifest records the remap (sets as lists) and ``"label_sets": {"<id>": [class
ids]}`` at its top level, which ``BiodiversityCombinedDataset`` reads.
"""

import json
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from geoseg.classes import CLASSES, IGNORE_INDEX, OEM_CLASSES, OEM_TO_TARGET
from geoseg.datasets.io import (
    describe_skipped,
    read_image_and_valid,
    read_mask,
    scan_folder,
    write_png_atomic,
)
from geoseg.datasets.openearthmap import (
    OEMPair,
    RemapEntry,
    check_remap,
    locate_pairs,
    read_split_list,
    remap_as_plain,
    remap_label_sets,
    remap_lookup_table,
)
from geoseg.datasets.target_dataset import TargetDataset
from geoseg.errors import DataError, GeoSegError
from geoseg.files import (
    check_build_output,
    remove_stale_temporaries,
    replace_folder,
    temporary_name,
    write_error,
)

MANIFEST_NAME = "combined_manifest.json"
TARGET_PREFIX, OEM_PREFIX = "target_", "oem_"
SPLITS = {"train": "Train", "val": "Val"}  # OpenEarthMap split list -> combined folder


@dataclass(frozen=True)
class CombineSettings:
    """What to combine and how; the defaults are the recipe's."""

    target_root: Path = Path("data/biodiversity")
    oem_root: Path = Path("data/OpenEarthMap")
    output_root: Path = Path("data/biodiversity_combined")
    num_oem_train: int = 3000
    num_oem_val: int = 500
    seed: int = 42
    oem_scale: float = 1.0  # resize factor for OpenEarthMap tiles (its pixels are 0.25-0.5 m)
    oem_scale_reason: str = "as given"  # why this scale, e.g. "auto: 0.50 m / 1.00 m"
    # per OpenEarthMap id 0..8: a target class id, ignore, or a label set (a tuple of class ids)
    remap: tuple[RemapEntry, ...] = OEM_TO_TARGET
    ignore_index: int = IGNORE_INDEX
    # The target's ground sampling distance in metres, where its tiles carry none (PNG); recorded
    # in the manifest for the pre-flight (geoseg.datasets.preflight), not used by the build.
    target_gsd: float | None = None


@dataclass
class CombinePlan:
    """Everything the build will do, decided before anything is written."""

    settings: CombineSettings
    target_pairs: list[tuple[Path, Path]]  # (image, mask) of the target Train split
    oem_pairs: dict[str, list[OEMPair]]  # "train"/"val" -> selected pairs
    missing_images: dict[str, list[str]]  # listed names whose image is absent (xBD)
    missing_labels: dict[str, list[str]]
    replaces_existing: bool
    label_sets: dict[int, tuple[int, ...]] = field(default_factory=dict)  # mask id -> class ids
    # entries of the target Train folders that are not tiles: "images_png/notes.txt" -> why
    target_skipped: dict[str, str] = field(default_factory=dict)


@dataclass
class CombineSummary:
    """Counts and pixel statistics of a finished build."""

    target_linked: int = 0
    target_skipped: dict[str, str] = field(default_factory=dict)  # as CombinePlan's
    oem_written: dict[str, int] = field(default_factory=dict)
    skipped_missing_image: dict[str, int] = field(default_factory=dict)
    skipped_missing_label: dict[str, int] = field(default_factory=dict)
    skipped_unreadable: list[str] = field(default_factory=list)
    tiles_with_unknown_ids: list[str] = field(default_factory=list)
    oem_pixels: list[int] = field(default_factory=lambda: [0] * 256)  # before the remap
    target_pixels: list[int] = field(default_factory=lambda: [0] * 256)  # after
    oem_scale: float = 1.0
    oem_scale_reason: str = "as given"


def plan_combined_dataset(settings: CombineSettings) -> CombinePlan:
    """Check the sources and the output folder, and select the tiles; writes nothing."""
    remap = check_remap(settings.remap, len(CLASSES), settings.ignore_index)
    settings = replace(settings, remap=remap)  # sets as sorted tuples
    if settings.oem_scale <= 0:
        raise DataError(f"oem_scale must be positive, got {settings.oem_scale}")
    if settings.target_gsd is not None and not settings.target_gsd > 0:  # NaN included
        raise DataError(
            f"target_gsd must be a positive ground sampling distance in metres, got "
            f"{settings.target_gsd}"
        )
    _check_output_is_separate(settings)
    # checks the folders and the pairing; a link to a missing tile is an error
    target = TargetDataset(settings.target_root, "Train")
    target_pairs = [(target.image_paths[s], target.mask_paths[s]) for s in target.img_ids]
    target_skipped = {
        f"{folder.name}/{name}": why
        for folder in (target.image_dir, target.mask_dir)
        for name, why in scan_folder(folder).skipped.items()
    }

    oem_pairs, missing_images, missing_labels = {}, {}, {}
    for split, count in (("train", settings.num_oem_train), ("val", settings.num_oem_val)):
        names = read_split_list(settings.oem_root, split)
        found, missing_images[split], missing_labels[split] = locate_pairs(settings.oem_root, names)
        rng = random.Random(f"{settings.seed}-{split}")
        selected = rng.sample(found, min(count, len(found)))
        oem_pairs[split] = sorted(selected, key=lambda pair: pair.name)
    if not oem_pairs["train"]:
        raise DataError(
            f"{settings.oem_root}: none of the {len(missing_images['train'])} tiles in train.txt has "
            "both an image and a label on disk"
        )
    return CombinePlan(
        settings,
        target_pairs,
        oem_pairs,
        missing_images,
        missing_labels,
        replaces_existing=settings.output_root.exists(),
        label_sets=remap_label_sets(remap, len(CLASSES), settings.ignore_index),
        target_skipped=target_skipped,
    )


def describe_plan(plan: CombinePlan) -> str:
    """What a build would do, for a dry run and the log."""
    s = plan.settings
    lines = [
        f"output: {s.output_root}"
        + (" (replacing the previous build)" if plan.replaces_existing else ""),
        f"  Train: link {len(plan.target_pairs)} target tiles from {s.target_root}/Train"
        + _skipped_note(plan.target_skipped),
    ]
    for split, folder in SPLITS.items():
        wanted = s.num_oem_train if split == "train" else s.num_oem_val
        lines.append(
            f"  {folder}: convert {len(plan.oem_pairs[split])} OpenEarthMap {split} tiles "
            f"(asked for {wanted}; {len(plan.missing_images[split])} listed without image, "
            f"{len(plan.missing_labels[split])} without label), scale {s.oem_scale:g} "
            f"({s.oem_scale_reason})"
        )
    lines.append(
        "  remap: "
        + ", ".join(f"{OEM_CLASSES[i]}->{_target_name(t)}" for i, t in enumerate(s.remap))
    )
    if plan.label_sets:
        lines.append(
            "  label sets (Train masks: their own ids; Val masks: ignore): "
            + ", ".join(f"{i} = {_target_name(m)}" for i, m in plan.label_sets.items())
        )
    return "\n".join(lines)


def build_combined_dataset(
    plan: CombinePlan, workers: int = 1, progress: bool = True
) -> CombineSummary:
    """Write the combined layout for ``plan``; the output appears only once complete."""
    s = plan.settings
    output = _real_folder(Path(s.output_root))
    remove_stale_temporaries(output.parent, [output.name])  # left by killed builds
    staging = temporary_name(output, folder=True)
    summary = CombineSummary(
        oem_scale=s.oem_scale,
        oem_scale_reason=s.oem_scale_reason,
        skipped_missing_image={k: len(v) for k, v in plan.missing_images.items()},
        skipped_missing_label={k: len(v) for k, v in plan.missing_labels.items()},
        target_skipped=dict(plan.target_skipped),
    )
    existed = output.exists()
    try:
        for folder in ("Train/images_png", "Train/masks_png", "Val/images_png", "Val/masks_png"):
            (staging / folder).mkdir(parents=True)
        for image, mask in plan.target_pairs:
            _link(image, staging / "Train/images_png", output / "Train/images_png", s.target_root)
            _link(mask, staging / "Train/masks_png", output / "Train/masks_png", s.target_root)
            summary.target_linked += 1
        # Val is scored: its label-set pixels are written as ignore.
        jobs = [
            (pair, staging / SPLITS[split], s.oem_scale, s.remap, s.ignore_index, split == "val")
            for split, pairs in plan.oem_pairs.items()
            for pair in pairs
        ]
        results = _run_jobs(jobs, workers, progress)
        for (pair, folder, *_), result in zip(jobs, results, strict=True):
            split = "train" if folder.name == "Train" else "val"
            if isinstance(result, str):
                summary.skipped_unreadable.append(result)
                continue
            oem_counts, target_counts = result
            summary.oem_written[split] = summary.oem_written.get(split, 0) + 1
            summary.oem_pixels = [
                a + b for a, b in zip(summary.oem_pixels, oem_counts, strict=True)
            ]
            summary.target_pixels = [
                a + b for a, b in zip(summary.target_pixels, target_counts, strict=True)
            ]
            if sum(oem_counts[len(OEM_CLASSES) :]):
                summary.tiles_with_unknown_ids.append(pair.name)
        if not summary.oem_written.get("train"):
            raise DataError(f"{s.oem_root}: no OpenEarthMap training tile could be converted")
        manifest = {
            "settings": _jsonable(asdict(s)),
            "remap": remap_as_plain(s.remap),
            "label_sets": {str(k): list(v) for k, v in plan.label_sets.items()},
            "summary": asdict(summary),
        }
        (staging / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2) + "\n")
        replace_folder(output, staging)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, GeoSegError):  # links, manifest
            raise write_error(output, error, "the combined dataset", existed) from error
        raise
    return summary


def describe_summary(
    summary: CombineSummary, label_sets: dict[int, tuple[int, ...]] | None = None
) -> str:
    """Counts and the pixel share of every class before and after the remap; ``label_sets`` (the
    plan's) names the label-set ids."""
    label_sets = label_sets or {}
    lines = [
        f"linked {summary.target_linked} target tiles{_skipped_note(summary.target_skipped)}; "
        "wrote OpenEarthMap "
        + ", ".join(f"{split} {count}" for split, count in summary.oem_written.items()),
        f"OpenEarthMap tiles scaled by {summary.oem_scale:g} ({summary.oem_scale_reason})",
        "skipped (image absent, as for the xBD regions of the public release): "
        + ", ".join(f"{k} {v}" for k, v in summary.skipped_missing_image.items()),
    ]
    if any(summary.skipped_missing_label.values()):
        lines.append(
            "skipped (label absent): "
            + ", ".join(f"{k} {v}" for k, v in summary.skipped_missing_label.items())
        )
    if summary.skipped_unreadable:
        lines.append(f"WARNING: skipped {len(summary.skipped_unreadable)} unreadable tiles:")
        lines += [f"  {reason}" for reason in summary.skipped_unreadable[:20]]
    if summary.tiles_with_unknown_ids:
        lines.append(
            f"WARNING: {len(summary.tiles_with_unknown_ids)} tiles have label ids above 8, written as "
            f"ignore: {', '.join(summary.tiles_with_unknown_ids[:10])}"
        )
    oem_total = sum(summary.oem_pixels) or 1
    lines.append("OpenEarthMap pixel shares before the remap:")
    for index, name in enumerate(OEM_CLASSES):
        lines.append(f"  {index} {name:<17} {100 * summary.oem_pixels[index] / oem_total:6.2f}%")
    unknown = sum(summary.oem_pixels[len(OEM_CLASSES) :])
    if unknown:
        lines.append(f"  >8 {'unknown ids':<16} {100 * unknown / oem_total:6.2f}%")
    target_total = sum(summary.target_pixels) or 1
    lines.append("after the remap (target classes):")
    for index, name in enumerate(CLASSES):
        lines.append(
            f"  {index} {name:<17} {100 * summary.target_pixels[index] / target_total:6.2f}%"
        )
    for index, members in label_sets.items():
        lines.append(
            f"  {index} {_target_name(members):<17} "
            f"{100 * summary.target_pixels[index] / target_total:6.2f}%"
        )
    ignored = sum(summary.target_pixels[len(CLASSES) :]) - sum(
        summary.target_pixels[index] for index in label_sets
    )
    lines.append(f"  {IGNORE_INDEX} {'ignore':<15} {100 * ignored / target_total:6.2f}%")
    return "\n".join(lines)


# --- helpers ------------------------------------------------------------------------------------


def convert_oem_pair(
    pair: OEMPair,
    folder: Path,
    scale: float,
    remap: tuple[RemapEntry, ...],
    ignore_index: int,
    sets_as_ignore: bool = False,
) -> tuple[list[int], list[int]] | str:
    """Write one OpenEarthMap tile as ``oem_<stem>.png`` image and remapped mask under ``folder``.

    Returns the (256,) pixel counts of the label before and after the remap, or the reason the
    tile was skipped (unreadable, or image and label of different sizes). Pixels that are nodata
    in the image (its nodata value, mask or alpha) become ``ignore_index`` in the mask. Label-set
    pixels get their set's id, or ``ignore_index`` with ``sets_as_ignore`` (masks to score).
    """
    try:
        (image, valid), label = read_image_and_valid(pair.image), read_mask(pair.label)
    except DataError as error:
        return str(error)
    if image.shape[:2] != label.shape:
        return f"{pair.label}: label size {label.shape[::-1]} differs from its image {image.shape[1::-1]}"
    lut = remap_lookup_table(
        remap, ignore_index, num_classes=len(CLASSES), sets_as_ignore=sets_as_ignore
    )
    mask = lut[label]
    if valid is not None:
        mask[~valid] = ignore_index
    if scale != 1.0:
        height, width = label.shape
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
        label = cv2.resize(label, size, interpolation=cv2.INTER_NEAREST)
    write_png_atomic(folder / "images_png" / f"{OEM_PREFIX}{pair.stem}.png", image)
    write_png_atomic(folder / "masks_png" / f"{OEM_PREFIX}{pair.stem}.png", mask)
    return (
        np.bincount(label.ravel(), minlength=256).tolist(),
        np.bincount(mask.ravel(), minlength=256).tolist(),
    )


def _convert(job: tuple) -> tuple[list[int], list[int]] | str:
    return convert_oem_pair(*job)


def _run_jobs(jobs: list[tuple], workers: int, progress: bool) -> list:
    bar = dict(total=len(jobs), desc="OpenEarthMap tiles", unit="tile", disable=not progress)
    if workers <= 1:
        return list(tqdm(map(_convert, jobs), **bar))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(_convert, jobs, chunksize=4), **bar))


def _link(source: Path, staging_dir: Path, final_dir: Path, root: Path) -> None:
    """Symlink ``target_<name>`` in ``staging_dir`` to ``source``, relative to where it will live.

    Folders are resolved on both sides (a relative link is followed from its real folder); the file
    itself is not, and the link must land inside the real ``root``.
    """
    real_source = os.path.join(os.path.realpath(source.parent), source.name)
    real_root = os.path.realpath(root)
    if os.path.commonpath([real_source, real_root]) != real_root:
        raise DataError(f"{source}: lies outside the target root {root}; refusing to link to it")
    relative = os.path.relpath(real_source, os.path.realpath(final_dir))
    (staging_dir / f"{TARGET_PREFIX}{source.name}").symlink_to(relative)


def _skipped_note(skipped: dict[str, str]) -> str:
    """`` (skipped 1 file: images_png/notes.txt (not an image))``, or ``""``."""
    return f" ({describe_skipped(skipped)})" if skipped else ""


def _real_folder(path: Path) -> Path:
    """``path`` with its folders resolved, so the build, its staging folder and its relative
    links sit where the data really is."""
    return Path(os.path.realpath(path))


def _check_output_is_separate(settings: CombineSettings) -> None:
    """The output must not overlap a source, and an existing output must be a previous build."""
    check_build_output(
        settings.output_root,
        {"the target root": settings.target_root, "the OpenEarthMap root": settings.oem_root},
        lambda folder: (folder / MANIFEST_NAME).is_file(),
        f"a combined-dataset build (no {MANIFEST_NAME})",
    )


def _target_name(entry: RemapEntry) -> str:
    """A remap entry by name: ``forest``, ``ignore`` or a set ``forest|grassland``."""
    if isinstance(entry, tuple):
        return "|".join(map(_target_name, entry))
    return CLASSES[entry] if entry < len(CLASSES) else "ignore"


def _jsonable(value):
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value
