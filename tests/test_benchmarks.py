"""The benchmark suite's smallest run: every part measured, the JSON complete and positive."""

import json
import os
import subprocess
import sys

import cv2
import pytest
import torch

from benchmarks import bf16_agreement
from benchmarks.readme import BLOCK, PAGE, regenerate
from benchmarks.suite import TRAINING_ROWS, targets
from geoseg.inference import autocast_dtype

from conftest import REPO_ROOT, save, tiny_ftunetformer

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
    assert set(report["train"]) == {"demo"} and "tta" in report and "data_loading" in report
    demo = report["train"]["demo"]
    for name in TRAINING_ROWS:
        assert demo[name]["median_s"] > 0, name
        assert demo[name]["images_per_s"] == pytest.approx(8 / demo[name]["median_s"]), name
        assert f"| demo: {TRAINING_ROWS[name]} | 64x64 | 8 |" in result.stdout
    for name in ("timm_backbone_fwd_bwd", "backbone_fwd_bwd", "supervised_step", "kd_step"):
        assert demo[name]["peak_memory_mib"] is not None, name
    assert demo["model_fwd_bwd"]["median_s"] < demo["supervised_step"]["median_s"]
    # every ratio is its two timings divided
    seconds = {name: demo[name]["median_s"] for name in TRAINING_ROWS}
    assert demo["vs_timm_backbone"] == pytest.approx(
        seconds["model_fwd_bwd"] / seconds["timm_backbone_fwd_bwd"]
    )
    assert demo["decoder_overhead"] == pytest.approx(
        seconds["model_fwd_bwd"] / seconds["backbone_fwd_bwd"]
    )
    assert demo["kd_overhead"] == pytest.approx(seconds["kd_step"] / seconds["supervised_step"])
    tta = report["tta"]
    assert tta["passes_per_image"] == 18
    assert tta["predictor_default_on_this_device"] == "flips_batched"
    expected_precision = "fp32" if autocast_dtype(torch.device("cpu")) is None else "bf16"
    assert tta["precision_default_on_this_device"] == expected_precision
    for name, per_image in tta["seconds_per_image"].items():
        assert tta["images_per_s"][name] == pytest.approx(1 / per_image)
        assert tta["speedup_vs_naive"][name] == pytest.approx(
            tta["seconds_per_image"]["naive"] / per_image
        )
    # the targets: the demo's for information only, the TTA's with their bounds
    targets = {(t["target"], t["model"]): t for t in report["targets"]}
    for key in ("vs_timm_backbone", "decoder_overhead", "kd_overhead"):
        assert targets[(key, "demo")]["ratio"] == demo[key]
        assert targets[(key, "demo")]["met"] is None and targets[(key, "demo")]["bound"] is None
    default = "flips_batched" if expected_precision == "fp32" else "flips_batched_bf16"
    other = default.replace("flips_batched", "per_flip")
    speedup, mode = targets[("tta_speedup", "demo")], targets[("tta_mode", "demo")]
    assert speedup["ratio"] == tta["speedup_vs_naive"][default]
    assert speedup["bound"] == ">= 1" and speedup["met"] is (speedup["ratio"] >= 1.0)
    assert mode["ratio"] == pytest.approx(tta["images_per_s"][default] / tta["images_per_s"][other])
    assert mode["met"] is (mode["ratio"] >= 1.0)
    assert (("bf16_tta_speedup", "demo") in targets) is (expected_precision == "bf16")
    assert ("loading_margin", "recipe") not in targets  # the recipe's student was not measured
    loading = report["data_loading"]
    assert loading["scaling"] == pytest.approx(
        loading["images_per_s_configured"] / loading["images_per_s_1_worker"]
    )


def test_targets_compare_each_ratio_with_its_bound():
    report = {
        "train": {
            "recipe": {"vs_timm_backbone": 1.41, "decoder_overhead": 1.5, "kd_overhead": 1.5},
        },
        "tta": {
            "model": "recipe",
            "predictor_default_on_this_device": "flips_batched",
            "precision_default_on_this_device": "bf16",
            "images_per_s": {
                "naive": 1.0,
                "per_flip": 1.0,
                "flips_batched": 1.1,
                "per_flip_bf16": 2.0,
                "flips_batched_bf16": 1.9,
            },
            "speedup_vs_naive": {"flips_batched_bf16": 1.9},
            "bf16_speedup": 1.9 / 1.1,
        },
        "data_loading": {"images_per_s_configured": 10.0},
    }
    report["train"]["recipe"]["supervised_step"] = {"images_per_s": 2.5}
    rows = {row["target"]: row for row in targets(report)}
    assert rows["vs_timm_backbone"]["met"] is False  # 1.41 > 1.40
    assert rows["decoder_overhead"]["met"] is None  # listed for information
    assert rows["kd_overhead"]["met"] is True  # 1.5 <= 1.5
    assert rows["tta_speedup"]["ratio"] == 1.9 and rows["tta_speedup"]["met"] is True
    assert rows["tta_mode"]["ratio"] == pytest.approx(0.95) and rows["tta_mode"]["met"] is False
    assert rows["bf16_tta_speedup"]["met"] is False  # 1.73 < 1.8
    assert rows["loading_margin"]["ratio"] == 4.0 and rows["loading_margin"]["met"] is True


def test_the_benchmark_tables_are_those_of_the_results_files():
    text = PAGE.read_text()
    assert len(BLOCK.findall(text)) >= 2
    assert regenerate(text) == text, "run python -m benchmarks.readme"
    # a figure edited by hand is put back from its results file
    match = BLOCK.search(text)
    edited = text[: match.start(3)] + match[3].replace("|", "| 9.999", 1) + text[match.end(3) :]
    assert edited != text and regenerate(edited) == text


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
    assert "demo ensemble, 2 models x 3 scales x 3 flips, 64x64, cpu (1 threads): images/s" in (
        result.stdout
    )
    tta = json.loads(out.read_text())
    assert tta["speedup_vs_naive"]["naive"] == 1.0
    assert set(tta["seconds_per_image"]) >= {"naive", "per_flip", "flips_batched"}


def test_bf16_agreement_counts_every_pixel_of_every_ensemble(tmp_path, synthetic_root):
    paths = []
    for seed in (0, 1):
        paths.append(tmp_path / f"m{seed}.ckpt")
        save(tiny_ftunetformer(seed=seed), paths[-1])
    split = synthetic_root / "Test"
    result = bf16_agreement.measure([paths, paths[:1]], split / "images_png", split / "masks_png")
    images = sorted((split / "images_png").iterdir())
    pixels = sum(cv2.imread(str(path)).shape[0] * cv2.imread(str(path)).shape[1] for path in images)
    assert [row["pixels"] for row in result["ensembles"]] == [pixels, pixels]
    assert result["pixels"] == 2 * pixels
    agreeing = sum(row["agreeing"] for row in result["ensembles"])
    assert result["agreement"] == agreeing / (2 * pixels) and 0.9 < result["agreement"] <= 1
    assert all(0 <= row["mIoU"]["bf16"] <= 1 for row in result["ensembles"])
    table = bf16_agreement.summary(result)
    assert table.count("\n") == 4  # header, rule, a row per ensemble, then all of them
