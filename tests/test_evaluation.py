"""evaluation/model_metrics.py run as a subprocess on tiny masks written into a temporary folder."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = "evaluation/model_metrics.py"
IGNORE = 255

# Two 2x3 masks. Over both, the pixels that count give the confusion matrix (rows GT)
# [[3, 1, 0], [1, 2, 1], [0, 0, 2]]; the two ignored pixels have arbitrary predictions.
GT = {
    "tile_a": [[0, 0, 0], [0, 1, IGNORE]],
    "tile_b": [[1, 1, 1], [2, 2, IGNORE]],
}
PRED = {
    "tile_a": [[0, 0, 0], [1, 0, 2]],
    "tile_b": [[1, 1, 2], [2, 2, 0]],
}


def write_masks(folder: Path, masks: dict, suffix: str = ".png") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, rows in masks.items():
        assert cv2.imwrite(str(folder / f"{stem}{suffix}"), np.array(rows, dtype=np.uint8))
    return folder


def run_script(*args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def folders(tmp_path):
    gt_dir = write_masks(tmp_path / "gt", GT, suffix=".tif")
    pred_dir = write_masks(tmp_path / "pred", PRED)
    return pred_dir, gt_dir


def test_scores_match_hand_computation(folders, tmp_path):
    pred_dir, gt_dir = folders
    out_dir = tmp_path / "report"
    result = run_script(
        "--pred-dir", pred_dir, "--gt-dir", gt_dir, "--out-dir", out_dir, "--num-classes", 3
    )
    assert result.returncode == 0, result.stderr

    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["confusion_matrix"] == [[3, 1, 0], [1, 2, 1], [0, 0, 2]]
    assert metrics["OA"] == pytest.approx(7 / 10)
    assert metrics["mIoU"] == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
    assert metrics["mF1"] == pytest.approx((3 / 4 + 4 / 7 + 4 / 5) / 3)
    class_1 = metrics["per_class"]["class_1"]
    assert class_1["IoU"] == pytest.approx(2 / 5)
    assert class_1["precision"] == pytest.approx(2 / 3)
    assert class_1["recall"] == pytest.approx(1 / 2)
    assert class_1["F1"] == pytest.approx(4 / 7)
    assert class_1["support"] == 4
    assert "55.56" in result.stdout  # mIoU in percent

    figure = cv2.imread(str(out_dir / "confusion_matrix.png"), cv2.IMREAD_UNCHANGED)
    assert figure is not None and figure.ndim == 3 and figure.shape[2] == 3
    assert not (pred_dir / "metrics.json").exists()


def test_default_class_names_and_out_dir_and_rerun(folders):
    pred_dir, gt_dir = folders
    for _ in range(2):  # the report written into the prediction folder must not be read back
        result = run_script("--pred-dir", pred_dir, "--gt-dir", gt_dir)
        assert result.returncode == 0, result.stderr
    metrics = json.loads((pred_dir / "metrics.json").read_text())
    assert list(metrics["per_class"]) == [
        "other",
        "forest",
        "grassland",
        "cropland",
        "settlement",
        "water",
    ]
    assert metrics["per_class"]["water"]["IoU"] is None
    assert metrics["mIoU"] == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
    assert (pred_dir / "confusion_matrix.png").is_file()


def test_missing_prediction_fails_and_writes_nothing(folders, tmp_path):
    pred_dir, gt_dir = folders
    (pred_dir / "tile_b.png").unlink()
    out_dir = tmp_path / "report"
    result = run_script(
        "--pred-dir", pred_dir, "--gt-dir", gt_dir, "--out-dir", out_dir, "--num-classes", 3
    )
    assert result.returncode != 0
    assert "tile_b" in result.stderr and "without a prediction" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (out_dir / "metrics.json").exists()
    assert not (pred_dir / "metrics.json").exists()


def test_size_mismatch_and_extra_prediction_fail_and_write_nothing(folders):
    pred_dir, gt_dir = folders
    cv2.imwrite(str(pred_dir / "tile_a.png"), np.zeros((4, 3), dtype=np.uint8))
    cv2.imwrite(str(pred_dir / "stray.png"), np.zeros((2, 3), dtype=np.uint8))
    result = run_script("--pred-dir", pred_dir, "--gt-dir", gt_dir, "--num-classes", 3)
    assert result.returncode != 0
    assert "tile_a: prediction 3x4, ground truth 3x2" in result.stderr
    assert "stray" in result.stderr  # every problem is listed, not just the first
    assert not (pred_dir / "metrics.json").exists()
    assert not (pred_dir / "confusion_matrix.png").exists()


def test_long_listing_is_capped(tmp_path):
    gt_dir = write_masks(tmp_path / "gt", {f"tile_{i:02d}": [[0]] for i in range(25)})
    pred_dir = write_masks(tmp_path / "pred", {"tile_00": [[0]]})
    result = run_script("--pred-dir", pred_dir, "--gt-dir", gt_dir)
    assert result.returncode != 0
    assert "(24)" in result.stderr and "and 4 more" in result.stderr
    assert "tile_20" in result.stderr and "tile_24" not in result.stderr


def test_invalid_ids_and_empty_folders_fail(folders, tmp_path):
    pred_dir, gt_dir = folders
    cv2.imwrite(str(pred_dir / "tile_a.png"), np.full((2, 3), 9, dtype=np.uint8))
    result = run_script("--pred-dir", pred_dir, "--gt-dir", gt_dir, "--num-classes", 3)
    assert result.returncode != 0 and "tile_a" in result.stderr and "[9]" in result.stderr

    empty = tmp_path / "empty"
    empty.mkdir()
    result = run_script("--pred-dir", empty, "--gt-dir", gt_dir)
    assert result.returncode != 0 and "no predicted masks" in result.stderr
    assert not (empty / "metrics.json").exists()


def test_several_prediction_folders_are_each_scored(folders, tmp_path):
    pred_dir, gt_dir = folders
    copy = tmp_path / "copy"
    shutil.copytree(pred_dir, copy)
    result = run_script("--pred-dir", pred_dir, copy, "--gt-dir", gt_dir, "--num-classes", 3)
    assert result.returncode == 0, result.stderr
    first, second = (
        json.loads((folder / "metrics.json").read_text()) for folder in (pred_dir, copy)
    )
    assert first == second
    assert first["mIoU"] == pytest.approx((3 / 5 + 2 / 5 + 2 / 3) / 3)
