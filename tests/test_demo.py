"""The end-to-end demo (`make demo`), run smaller: every stage, every hand-off file, every report row."""

import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

ROWS = (
    "teacher",
    "student_target_only",
    "student_pretrain_all",
    "student_ft_target_kd",
    "student_ft_target_kd_tta",
    "ensemble_tta",
)


@pytest.mark.slow
def test_demo_pipeline_end_to_end(tmp_path):
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # The demo configs, with the schedules cut to two epochs (one of KD after one warm-up epoch).
    configs = tmp_path / "configs"
    configs.mkdir()
    for source in (REPO_ROOT / "config" / "demo").glob("*.py"):
        text = re.sub(r"(?m)^max_epoch = \d+$", "max_epoch = 2", source.read_text())
        text = re.sub(r"(?m)^kd_warmup_epochs = \d+$", "kd_warmup_epochs = 1", text)
        (configs / source.name).write_text(text)
    data_args = (
        "--train 8 --val 4 --test 4 --tile-size 32 --oem-tiles-per-region 6 --oem-tile-size 48"
    )
    result = subprocess.run(
        [
            "make",
            "-f",
            str(REPO_ROOT / "Makefile"),
            "demo-pipeline",
            f"PYTHON={sys.executable}",
            f"DEMO_CONFIGS={configs}",
            f"DEMO_DATA_ARGS={data_args}",
        ],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert (tmp_path / "data/demo/biodiversity_combined/combined_manifest.json").is_file()
    for stage in ROWS[:4]:
        assert (tmp_path / "model_weights/demo" / stage / "last.ckpt").is_file(), stage
        assert list((tmp_path / "lightning_logs/demo" / stage).glob("version_*/events.*")), stage
    for row in ROWS:
        folder = tmp_path / "outputs/demo/predictions" / row
        assert len(list(folder.glob("test_*.png"))) == 4, row
        assert (folder / "metrics.json").is_file(), row
    for figure in ("iou_per_class.png", "confusion_matrix.png", "montage.png"):
        assert (tmp_path / "outputs/demo" / figure).stat().st_size > 0, figure

    report = (tmp_path / "outputs/demo/results.md").read_text()
    table = [line for line in report.splitlines() if line.startswith("| ") and "mIoU" not in line]
    assert len(table) == len(ROWS)
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 3 + 6
        assert all(re.fullmatch(r"\d+\.\d\d", cell) for cell in cells[1:3]), line  # mIoU, OA
    assert len(re.findall(r"\*\*(held|did NOT hold)\*\*", report)) == 5
