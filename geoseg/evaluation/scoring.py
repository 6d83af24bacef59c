"""Scoring folders of predicted masks against ground truth, and saving the scores.

``evaluate_folders`` builds one confusion matrix over every pair of masks matched by file stem;
``save_metrics_json`` writes the scores as ``metrics.json``.
"""

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.io import list_files, read_mask
from geoseg.errors import DataError
from geoseg.files import write_text_atomic
from geoseg.metrics import confusion_matrix

METRICS_JSON = "metrics.json"
CONFUSION_MATRIX_PNG = "confusion_matrix.png"
_MAX_LISTED = 20


def _listing(title: str, items: Sequence[str], one_per_line: bool = False) -> str:
    shown = list(items[:_MAX_LISTED])
    if len(items) > _MAX_LISTED:
        shown.append(f"and {len(items) - _MAX_LISTED} more")
    if one_per_line:
        return f"{title} ({len(items)}):" + "".join(f"\n    {item}" for item in shown)
    return f"{title} ({len(items)}): " + ", ".join(shown)


def evaluate_folders(
    pred_dir: str | os.PathLike,
    gt_dir: str | os.PathLike,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """(C, C) int64 confusion matrix over all pairs of class-id masks matched by file stem.

    Missing or extra predictions, size mismatches, unreadable files and invalid ids are collected
    over the whole set and raised together as one DataError (a ValueError). A
    ``confusion_matrix.png`` in the prediction folder (this module's own report) is not taken for
    a prediction.
    """
    pred_dir, gt_dir = Path(pred_dir), Path(gt_dir)
    gt_files = list_files(gt_dir)
    pred_files = list_files(pred_dir)
    report_stem = Path(CONFUSION_MATRIX_PNG).stem
    report = pred_files.get(report_stem)
    if report is not None and report.name == CONFUSION_MATRIX_PNG and report_stem not in gt_files:
        del pred_files[report_stem]
    if not gt_files:
        raise DataError(f"{gt_dir}: no ground-truth masks (.png, .tif, ...) found")
    if not pred_files:
        raise DataError(f"{pred_dir}: no predicted masks (.png, .tif, ...) found")

    missing = sorted(set(gt_files) - set(pred_files))
    extra = sorted(set(pred_files) - set(gt_files))
    mismatched: list[str] = []
    unreadable: list[str] = []
    invalid: list[str] = []
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    for stem in sorted(set(gt_files) & set(pred_files)):
        try:
            gt = read_mask(gt_files[stem])
            pred = read_mask(pred_files[stem])
        except (OSError, ValueError) as error:
            unreadable.append(str(error))
            continue
        if gt.shape != pred.shape:
            mismatched.append(
                f"{stem}: prediction {pred.shape[1]}x{pred.shape[0]}, "
                f"ground truth {gt.shape[1]}x{gt.shape[0]}"
            )
            continue
        try:
            cm += confusion_matrix(
                torch.from_numpy(pred), torch.from_numpy(gt), num_classes, ignore_index
            )
        except ValueError as error:
            invalid.append(f"{pred_files[stem].name} vs {gt_files[stem].name}: {error}")

    problems = []
    if missing:
        problems.append(_listing(f"ground-truth masks without a prediction in {pred_dir}", missing))
    if extra:
        problems.append(_listing(f"predictions without a ground-truth mask in {gt_dir}", extra))
    if mismatched:
        problems.append(_listing("size mismatches (W x H)", mismatched, one_per_line=True))
    if unreadable:
        problems.append(_listing("unreadable files", unreadable, one_per_line=True))
    if invalid:
        problems.append(_listing("invalid class ids", invalid, one_per_line=True))
    if problems:
        raise DataError("cannot evaluate:\n  " + "\n  ".join(problems))
    return cm


def save_metrics_json(scores: dict, path: str | os.PathLike) -> None:
    """Write ``scores`` as JSON through a temporary file and a rename (never a partial file)."""
    write_text_atomic(path, json.dumps(scores, indent=2, allow_nan=False) + "\n")
