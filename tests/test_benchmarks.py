"""The benchmark suite's smallest run: every part measured, the JSON complete and positive."""

import json
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

# One thread: a smoke test, not a measurement; OpenMP threads spinning on a busy machine's cores
# would make it many times slower.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}

SMALLEST = [
    "--models", "demo", "--tta-model", "demo", "--tta-size", "64", "--tta-images", "1",
    "--size", "64", "--loader-tiles", "2", "--loader-items", "4", "--workers", "1",
    "--rounds", "1", "--warmup", "0", "--device", "cpu",
]  # fmt: skip


@pytest.mark.slow  # the whole benchmark suite
def test_suite_runs_every_part_and_writes_the_json(tmp_path):
    out = tmp_path / "cpu.json"
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", *SMALLEST, "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| demo: KD step, same-size teacher | 64x64 | 8 |" in result.stdout
    report = json.loads(out.read_text())
    assert report["device"] == "cpu" and report["precision"] == "32-true"
    demo = report["train"]["demo"]
    for name in ("backbone_fwd_bwd", "model_fwd_bwd", "supervised_step", "kd_step"):
        assert demo[name]["median_s"] > 0 and demo[name]["images_per_s"] > 0, name
    for name in ("backbone_fwd_bwd", "supervised_step", "kd_step"):
        assert demo[name]["peak_memory_mib"] is not None, name
    assert demo["model_fwd_bwd"]["median_s"] < demo["supervised_step"]["median_s"]
    assert report["tta"]["passes_per_image"] == 18
    assert all(rate > 0 for rate in report["tta"]["images_per_s"].values())
    assert report["data_loading"]["images_per_s_1_worker"] > 0
    targets = {(t["target"], t["model"]): t for t in report["targets"]}
    assert (
        targets[("decoder_overhead", "demo")]["met"] is None
    )  # the targets are the recipe student's
    tta = report["tta"]
    assert tta["predictor_default_on_this_device"] == "per_flip"  # on a CPU
    assert targets[("tta_speedup", "demo")]["met"] in (True, False)
    assert targets[("tta_speedup", "demo")]["ratio"] == tta["speedup_vs_naive"]["per_flip"]
    assert targets[("tta_other_speedup", "demo")]["met"] is None


def test_tta_benchmark_still_runs_alone(tmp_path):
    out = tmp_path / "tta.json"
    script = REPO_ROOT / "benchmarks" / "ensemble_tta.py"
    arguments = ["--model", "demo", "--images", "1", "--size", "64", "--device", "cpu"]
    result = subprocess.run(
        [sys.executable, str(script), *arguments, "--json", str(out)],
        cwd=tmp_path,  # runs from anywhere
        capture_output=True,
        text=True,
        timeout=300,
        env=ENV,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "demo ensemble, 2 models x 3 scales x 3 flips, 64x64, cpu: images/s" in result.stdout
    assert json.loads(out.read_text())["speedup_vs_naive"]["naive"] == 1.0
