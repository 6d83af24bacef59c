"""The end-to-end demo (`make demo`), run smaller: every stage, every hand-off file, every report row."""

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
    # The demo configs, with the schedules cut to two epochs (one of KD after one warm-up epoch),
    # run for two seeds.
    configs = tmp_path / "configs"
    configs.mkdir()
    for source in (REPO_ROOT / "config" / "demo").glob("*.py"):
        text = re.sub(r"(?m)^max_epoch = \d+$", "max_epoch = 2", source.read_text())
        text = re.sub(r"(?m)^kd_warmup_epochs = \d+$", "kd_warmup_epochs = 1", text)
        text += "\nlog_every_n_steps = 1\n"  # one step an epoch here: log every one
        (configs / source.name).write_text(text)
    data_args = (
        "--train 8 --val 4 --test 4 --unlabelled 4 --tile-size 32 --oem-tiles-per-region 6 "
        "--oem-tile-size 48"
    )
    seeds = (1, 2)
    result = subprocess.run(
        [
            "make",
            "-f",
            str(REPO_ROOT / "Makefile"),
            "demo-pipeline",
            f"PYTHON={sys.executable}",
            f"DEMO_CONFIGS={configs}",
            f"DEMO_DATA_ARGS={data_args}",
            f"SEEDS={' '.join(map(str, seeds))}",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    assert (tmp_path / "data/demo/biodiversity_combined/combined_manifest.json").is_file()
    for seed in seeds:
        for stage in ROWS[:4]:
            weights = tmp_path / f"model_weights/demo/seed_{seed}" / stage / "last.ckpt"
            assert weights.is_file(), weights
            logs = tmp_path / f"lightning_logs/demo/seed_{seed}" / stage
            assert list(logs.glob("version_*/events.*")), logs
        for row in ROWS:
            folder = tmp_path / f"outputs/demo/seed_{seed}/predictions" / row
            assert len(list(folder.glob("test_*.png"))) == 4, folder
            assert (folder / "metrics.json").is_file(), folder
    for figure in ("iou_per_class.png", "confusion_matrix.png", "montage.png"):
        assert (tmp_path / "outputs/demo" / figure).stat().st_size > 0, figure

    report = (tmp_path / "outputs/demo/results.md").read_text()
    for fact in ("- command: `make demo-pipeline`", "- seeds: 1 2", "- machine: ", "- wall time: "):
        assert fact in report, fact
    table = [line for line in report.splitlines() if line.startswith("| ") and "mIoU" not in line]
    assert len(table) == len(ROWS)
    spread = r"\d+\.\d\d ± \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\]"  # mean ± std [min, max]
    for line in table:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert len(cells) == 3 + 6
        assert all(re.fullmatch(spread, cell) for cell in cells[1:3]), line  # mIoU, OA
    verdicts = re.findall(r"^- \*\*(held|did not hold|inconclusive)\*\*: ", report, re.M)
    assert len(verdicts) == 5
    assert "of the labelled test pixels" in report
    assert len(re.findall(r"% \(mean over the logged KD steps\)", report)) == 2
