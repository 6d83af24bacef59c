"""Confusion matrix and scores against a hand-made example: one histogram, scored once."""

import json

import numpy as np
import pytest
import torch

from geoseg.evaluation.plots import render_confusion_matrix
from geoseg.metrics import confusion_matrix, format_scores_table, segmentation_scores

IGNORE = 255
NAMES = ["a", "b", "c"]
# Rows ground truth, columns prediction.
HAND_CM = [
    [3, 1, 0],
    [1, 2, 1],
    [0, 0, 2],
]


def pixels_for(cm) -> tuple[torch.Tensor, torch.Tensor]:
    """(pred, target) 1-D tensors whose confusion matrix is ``cm``."""
    target, pred = [], []
    for gt_id, row in enumerate(cm):
        for pred_id, count in enumerate(row):
            target += [gt_id] * count
            pred += [pred_id] * count
    return torch.tensor(pred), torch.tensor(target)


def test_confusion_matrix_counts_and_ignores():
    pred, target = pixels_for(HAND_CM)
    # Ignored pixels, with predictions that would land anywhere (even out of range).
    pred = torch.cat([pred, torch.tensor([0, 2, 200])])
    target = torch.cat([target, torch.tensor([IGNORE, IGNORE, IGNORE])])
    cm = confusion_matrix(pred.view(1, 13), target.view(1, 13), num_classes=3)
    assert cm.dtype == torch.int64
    assert cm.tolist() == HAND_CM


def test_confusion_matrix_accepts_uint8_and_numpy():
    pred, target = pixels_for(HAND_CM)
    cm = confusion_matrix(pred.numpy().astype(np.uint8), target.numpy().astype(np.uint8), 3)
    assert cm.tolist() == HAND_CM


def test_scores_by_hand():
    scores = segmentation_scores(torch.tensor(HAND_CM), NAMES)
    a, b, c = (scores["per_class"][name] for name in NAMES)
    # a: TP 3, FP 1, FN 1.  b: TP 2, FP 1, FN 2.  c: TP 2, FP 1, FN 0.
    assert a["IoU"] == pytest.approx(3 / 5)
    assert a["precision"] == pytest.approx(3 / 4)
    assert a["recall"] == pytest.approx(3 / 4)
    assert a["F1"] == pytest.approx(3 / 4)
    assert b["IoU"] == pytest.approx(2 / 5)
    assert b["precision"] == pytest.approx(2 / 3)
    assert b["recall"] == pytest.approx(1 / 2)
    assert b["F1"] == pytest.approx(4 / 7)  # 2PR/(P+R) = (2/3) / (7/6)
    assert c["IoU"] == pytest.approx(2 / 3)
    assert c["precision"] == pytest.approx(2 / 3)
    assert c["recall"] == pytest.approx(1.0)
    assert c["F1"] == pytest.approx(4 / 5)
    assert [a["support"], b["support"], c["support"]] == [4, 4, 2]
    assert scores["OA"] == pytest.approx(7 / 10)
    assert scores["mIoU"] == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
    assert scores["mF1"] == pytest.approx((3 / 4 + 4 / 7 + 4 / 5) / 3)
    assert scores["confusion_matrix"] == HAND_CM
    assert list(scores) == ["mIoU", "mF1", "OA", "per_class", "confusion_matrix"]
    json.dumps(scores, allow_nan=False)  # plain Python values only


def test_class_absent_everywhere_is_none_and_left_out():
    cm = [[3, 1, 0, 0], [1, 2, 1, 0], [0, 0, 2, 0], [0, 0, 0, 0]]
    scores = segmentation_scores(np.array(cm), NAMES + ["d"])
    d = scores["per_class"]["d"]
    assert d == {"IoU": None, "F1": None, "precision": None, "recall": None, "support": 0}
    assert scores["mIoU"] == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
    table = format_scores_table(scores)
    assert "60.00" in table and "55.56" in table
    d_row = next(line for line in table.splitlines() if line.startswith("d "))
    assert d_row.split()[1:] == ["-", "-", "-", "-", "0.00"]


def test_class_only_predicted_counts_as_zero():
    # GT never c, prediction says c once: IoU/F1/precision/recall of c are 0 and c is in the mean.
    cm = [[2, 0, 1], [0, 1, 0], [0, 0, 0]]
    scores = segmentation_scores(cm, NAMES)
    c = scores["per_class"]["c"]
    assert c == {"IoU": 0.0, "F1": 0.0, "precision": 0.0, "recall": 0.0, "support": 0}
    assert scores["mIoU"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert scores["per_class"]["a"]["recall"] == pytest.approx(2 / 3)


def test_invalid_ids_raise():
    with pytest.raises(ValueError, match=r"target ids \[7\]"):
        confusion_matrix(torch.tensor([0, 1]), torch.tensor([7, 1]), num_classes=3)
    with pytest.raises(ValueError, match=r"predicted ids \[5\]"):
        confusion_matrix(torch.tensor([5, 1]), torch.tensor([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match="shape"):
        confusion_matrix(torch.zeros(2, 2), torch.zeros(2, 3), num_classes=3)


def test_empty_matrix_raises():
    with pytest.raises(ValueError, match="empty"):
        segmentation_scores(torch.zeros(3, 3, dtype=torch.int64), NAMES)


def test_accumulating_batches_equals_one_matrix():
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, 4, (4, 16, 16), generator=generator)
    target[target == 3] = IGNORE
    pred = torch.randint(0, 3, (4, 16, 16), generator=generator)
    whole = confusion_matrix(pred, target, 3)
    parts = confusion_matrix(pred[:1], target[:1], 3) + confusion_matrix(pred[1:], target[1:], 3)
    assert torch.equal(whole, parts)
    assert whole.sum().item() == int((target != IGNORE).sum())


def test_render_confusion_matrix_is_an_rgb_image():
    image = render_confusion_matrix(torch.tensor(HAND_CM), NAMES)
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert image.shape[0] > 100 and image.shape[1] > 200
