"""Segmentation metrics: one confusion matrix over the whole set, scored once.

Rows of the confusion matrix are ground truth, columns prediction; pixels whose ground truth is
``ignore_index`` are left out. Per class: IoU = TP/(TP+FP+FN), precision = TP/(TP+FP),
recall = TP/(TP+FN), F1 = 2PR/(P+R). mIoU and mF1 average over the classes that occur in the ground
truth or the prediction; OA = trace/total. Under DDP, sum the matrices across processes first.
"""

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from geoseg.classes import IGNORE_INDEX


def confusion_matrix(
    pred: Tensor | np.ndarray,
    target: Tensor | np.ndarray,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
) -> Tensor:
    """(C, C) int64 counts, rows ground truth, columns prediction; pred, target: same-shape ids.

    Stays on the inputs' device. Target ids that are neither a class nor ``ignore_index``, and
    predicted ids outside [0, C) at counted pixels, raise ValueError (this check syncs once).
    """
    pred = torch.as_tensor(pred)
    target = torch.as_tensor(target, device=pred.device)
    if pred.shape != target.shape:
        raise ValueError(
            f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape"
        )
    pred = pred.long()
    target = target.long()
    valid = target != ignore_index
    bad_target = valid & ((target < 0) | (target >= num_classes))
    bad_pred = valid & ((pred < 0) | (pred >= num_classes))
    if bool((bad_target | bad_pred).any()):
        problems = []
        if bad_target.any():
            values = torch.unique(target[bad_target]).tolist()
            problems.append(
                f"target ids {values} are neither a class in [0, {num_classes}) "
                f"nor ignore_index {ignore_index}"
            )
        if bad_pred.any():
            values = torch.unique(pred[bad_pred]).tolist()
            problems.append(f"predicted ids {values} are outside [0, {num_classes})")
        raise ValueError("; ".join(problems))
    # Ignored pixels go to an extra bin that is dropped. 1-D scatter_add_ rather than bincount:
    # bincount on CUDA copies the input's min and max to the host on every call.
    bins = num_classes * num_classes
    index = torch.where(valid, target * num_classes + pred, bins).flatten()
    counts = torch.zeros(bins + 1, dtype=torch.int64, device=pred.device)
    counts.scatter_add_(0, index, torch.ones_like(index))
    return counts[:bins].view(num_classes, num_classes)


def segmentation_scores(cm: Tensor | np.ndarray, class_names: Sequence[str]) -> dict:
    """Score a (C, C) confusion matrix into the metrics.json structure (fractions in [0, 1]).

    A class that occurs in neither the ground truth nor the prediction gets None scores and is
    left out of mIoU/mF1; for the others, 0/0 parts are 0.0.
    """
    if isinstance(cm, Tensor):
        cm = cm.detach().cpu().numpy()
    cm = np.asarray(cm, dtype=np.int64)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise ValueError(f"confusion matrix has shape {cm.shape}; expected (C, C)")
    if len(class_names) != cm.shape[0]:
        raise ValueError(
            f"{len(class_names)} class names for a {cm.shape[0]}-class confusion matrix"
        )
    total = int(cm.sum())
    if total == 0:
        raise ValueError(
            "confusion matrix is empty: no pixel was counted (is all ground truth ignore_index?)"
        )

    per_class: dict[str, dict] = {}
    ious, f1s = [], []
    for c, name in enumerate(class_names):
        tp = int(cm[c, c])
        support = int(cm[c].sum())
        predicted = int(cm[:, c].sum())
        if support == 0 and predicted == 0:
            per_class[name] = {
                "IoU": None,
                "F1": None,
                "precision": None,
                "recall": None,
                "support": 0,
            }
            continue
        iou = tp / (support + predicted - tp)
        # 2PR/(P+R) written as 2TP/(2TP+FP+FN): the same number, defined when P or R is 0/0.
        f1 = 2 * tp / (support + predicted)
        per_class[name] = {
            "IoU": iou,
            "F1": f1,
            "precision": tp / predicted if predicted else 0.0,
            "recall": tp / support if support else 0.0,
            "support": support,
        }
        ious.append(iou)
        f1s.append(f1)
    return {
        "mIoU": float(np.mean(ious)),
        "mF1": float(np.mean(f1s)),
        "OA": float(np.trace(cm)) / total,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def format_scores_table(scores: dict) -> str:
    """A terminal table of per-class scores in percent, then mIoU, mF1 and OA."""
    per_class = scores["per_class"]
    total = sum(entry["support"] for entry in per_class.values())
    width = max([len("class")] + [len(name) for name in per_class])
    columns = ("IoU", "F1", "precision", "recall", "GT share")

    def pct(value: float | None) -> str:
        return "-" if value is None else f"{100 * value:.2f}"

    header = f"{'class':<{width}}  " + "  ".join(f"{col:>9}" for col in columns)
    lines = [header, "-" * len(header)]
    for name, entry in per_class.items():
        share = entry["support"] / total if total else None
        values = [entry["IoU"], entry["F1"], entry["precision"], entry["recall"], share]
        lines.append(f"{name:<{width}}  " + "  ".join(f"{pct(v):>9}" for v in values))
    lines.append("-" * len(header))
    for key in ("mIoU", "mF1", "OA"):
        lines.append(f"{key:<{width}}  {pct(scores[key]):>9}")
    return "\n".join(lines)
