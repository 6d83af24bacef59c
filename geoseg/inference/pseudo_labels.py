"""Pseudo-labels for unlabelled tiles: the ensemble's confident pixels, in the target layout.

A pixel takes the merged prediction's class where its merged confidence (largest class
probability) is at least a threshold, and the ignore id elsewhere, so training on the tile learns
from the confident pixels alone. The threshold is one number for every class, or per class in
class-balanced self-training (Zou et al., ECCV 2018): each class keeps the same share of the
pixels predicted as it, its most confident ones, so rare classes are not drowned out by a global
threshold that only the frequent, easy classes reach.

Layout written under an output root (``pseudo_label.py``):
``ensemble/<stem>.png`` (the merged prediction, every pixel) and ``ensemble/confidence/<stem>.png``
(16-bit confidence levels), written first and resumable (each records the tile it was computed
from, ``geoseg.inference.io.source_record``: a resumed run predicts again the tiles replaced
since under the same name); then ``Train/masks_png/<stem>.png`` (the
pseudo-labels), ``Train/images_png/<stem>.<ext>`` (links to the source images), ``settings.json``
(the prediction settings a resumed run must share) and, last, ``summary.json`` (present only
once every mask is written). Confidences are compared at 16-bit precision: level = round(c x 65535).
"""

import json
import math
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from geoseg.datasets.io import write_png_atomic
from geoseg.errors import DataError
from geoseg.files import (
    check_output_folder,
    remove_stale_temporaries,
    reporting_write_errors,
    write_atomic,
    write_text_atomic,
)
from geoseg.inference.io import CONFIDENCE_DIR

LEVELS = 65535  # confidence levels of the 16-bit confidence PNGs
ENSEMBLE_DIR = "ensemble"
SETTINGS_JSON, SUMMARY_JSON = "settings.json", "summary.json"


def confidence_level(confidence: float) -> int:
    """A confidence in [0, 1] as the 16-bit level it is stored and compared at."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence threshold must be in [0, 1], got {confidence}")
    return round(confidence * LEVELS)


def pseudo_mask(
    pred: np.ndarray, confidence: np.ndarray, thresholds: Sequence, ignore_index: int
) -> np.ndarray:
    """uint8 mask: ``pred`` where ``confidence >= thresholds[pred]`` (equality kept), else
    ``ignore_index``. A class whose threshold is None keeps nothing."""
    keep = np.zeros(pred.shape, dtype=bool)
    for class_id, threshold in enumerate(thresholds):
        if threshold is not None:
            keep |= (pred == class_id) & (confidence >= threshold)
    return np.where(keep, pred, ignore_index).astype(np.uint8)


def class_histograms(pred: np.ndarray, levels: np.ndarray, num_classes: int) -> np.ndarray:
    """(num_classes, LEVELS + 1) counts of each confidence level among the pixels of each class."""
    index = pred.astype(np.int64) * (LEVELS + 1) + levels.astype(np.int64)
    counts = np.bincount(index.ravel(), minlength=num_classes * (LEVELS + 1))
    return counts[: num_classes * (LEVELS + 1)].reshape(num_classes, LEVELS + 1)


def class_balanced_thresholds(histograms: np.ndarray, share: float) -> list[int | None]:
    """Per class, the highest level whose pixels at or above it are at least ``share`` of the
    class's pixels (its top ``share``, ties at the threshold kept); None for an absent class."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"class-balanced share must be in (0, 1], got {share}")
    thresholds = []
    for counts in histograms:
        total = int(counts.sum())
        if total == 0:
            thresholds.append(None)
            continue
        at_or_above = np.cumsum(counts[::-1])[::-1]  # at_or_above[level]
        needed = math.ceil(round(share * total, 9))  # pixels; rounded so 0.3 x 10 is 3, not 4
        thresholds.append(int(np.nonzero(at_or_above >= needed)[0].max()))
    return thresholds


def check_folders(input_dir: Path, output_root: Path) -> None:
    """Refuse an output root that is the input folder, contains it or lies inside it, or that
    cannot be a folder."""
    check_output_folder(output_root, "--output-root")
    source, target = input_dir.resolve(), output_root.resolve()
    if source == target or target in source.parents or source in target.parents:
        raise DataError(
            f"--output-root {output_root} and --input-dir {input_dir} overlap: the pseudo-labels "
            "would be written beside or around the unlabelled images; choose a separate folder"
        )


def check_settings(output_root: Path, settings: dict) -> None:
    """Record the prediction settings in a new output root, or refuse to resume one labelled with
    other settings, or to write into an existing folder this command did not create."""
    path = output_root / SETTINGS_JSON
    if path.is_file():
        previous = json.loads(path.read_text())
        if previous != settings:
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            raise DataError(
                f"{output_root} was labelled with other settings ({', '.join(changed)} differ: "
                f"{ {k: previous.get(k) for k in changed} }); resume with the same flags or choose "
                "a new --output-root"
            )
    # hidden entries: another run's temporaries, as it records the same settings at the same time
    elif output_root.is_dir() and any(not p.name.startswith(".") for p in output_root.iterdir()):
        raise DataError(
            f"--output-root {output_root} exists and holds files pseudo_label.py did not write "
            f"(no {SETTINGS_JSON}): its Train/ would be mixed with them; choose a new folder"
        )
    output_root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(settings, indent=2) + "\n")


def read_ensemble_output(output_root: Path, stem: str) -> tuple[np.ndarray, np.ndarray]:
    """(prediction, confidence levels) of one tile as pass 1 wrote them."""
    pred_path = output_root / ENSEMBLE_DIR / f"{stem}.png"
    level_path = output_root / ENSEMBLE_DIR / CONFIDENCE_DIR / f"{stem}.png"
    pred = cv2.imread(str(pred_path), cv2.IMREAD_UNCHANGED)
    levels = cv2.imread(str(level_path), cv2.IMREAD_UNCHANGED)
    if pred is None or levels is None or levels.dtype != np.uint16:
        raise DataError(
            f"{pred_path} or {level_path}: missing or unreadable; delete both and run again to "
            "predict the tile anew"
        )
    return pred, levels


def write_pseudo_labels(
    output_root: Path,
    inputs: Sequence[Path],
    class_names: Sequence[str],
    ignore_index: int,
    *,
    threshold: float = 0.9,
    class_balanced_share: float | None = None,
) -> dict:
    """From the ensemble outputs of ``inputs``: the masks, the image links and the summary.

    Thresholds are ``threshold`` for every class, or with ``class_balanced_share`` per class (see
    ``class_balanced_thresholds``), both over every tile. Returns the summary.
    """
    num_classes = len(class_names)
    histograms = np.zeros((num_classes, LEVELS + 1), dtype=np.int64)
    for path in inputs:
        histograms += class_histograms(*read_ensemble_output(output_root, path.stem), num_classes)
    if class_balanced_share is None:
        thresholds = [confidence_level(threshold)] * num_classes
    else:
        thresholds = class_balanced_thresholds(histograms, class_balanced_share)

    images, masks = output_root / "Train" / "images_png", output_root / "Train" / "masks_png"
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    # the summary marks a complete set of masks: gone while they are rewritten
    (output_root / SUMMARY_JSON).unlink(missing_ok=True)
    stems = {path.stem for path in inputs}
    for stale in [*images.iterdir(), *masks.iterdir()]:  # tiles no longer in the input folder
        if stale.stem not in stems and not stale.name.startswith("."):
            stale.unlink()
    for folder in (images, masks):  # what killed runs left, not what running ones are writing
        remove_stale_temporaries(folder)
    for path in inputs:
        pred, levels = read_ensemble_output(output_root, path.stem)
        write_png_atomic(
            masks / f"{path.stem}.png", pseudo_mask(pred, levels, thresholds, ignore_index)
        )
        with reporting_write_errors(images / path.name, "the image link"):
            link_image(path, images / path.name)

    kept = [0 if t is None else int(histograms[c, t:].sum()) for c, t in enumerate(thresholds)]
    predicted = histograms.sum(axis=1)
    summary = {
        "tiles": len(inputs),
        "pixels": int(predicted.sum()),
        "kept_share": sum(kept) / max(int(predicted.sum()), 1),
        "rule": (
            f"class-balanced: each class keeps its top {class_balanced_share:.0%}"
            if class_balanced_share is not None
            else f"confidence >= {threshold}"
        ),
        "per_class": {
            name: {
                "threshold": None if t is None else t / LEVELS,
                "predicted_pixels": int(predicted[c]),
                "kept_pixels": kept[c],
                "kept_share": kept[c] / predicted[c] if predicted[c] else None,
            }
            for c, (name, t) in enumerate(zip(class_names, thresholds, strict=True))
        },
    }
    write_text_atomic(output_root / SUMMARY_JSON, json.dumps(summary, indent=2) + "\n")
    return summary


def link_image(source: Path, link: Path) -> None:
    """``link`` pointing at ``source`` (absolute), replaced atomically if it exists; a copy where
    the file system has no symbolic links."""

    def make(temporary: Path) -> None:
        temporary.unlink()  # a link needs the name free; it is this call's own name
        try:
            os.symlink(source.resolve(), temporary)
        except OSError:
            shutil.copy2(source, temporary)

    write_atomic(link, make, what="the image link")
