"""Ensemble selection on Val (geoseg.inference.selection, evaluation/select_ensemble.py): greedy
choices and weights against hand traces on lookup-table members, and the script end to end."""

import json
import os
import runpy
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from geoseg.datasets import TargetDataset
from geoseg.errors import ConfigError, DataError
from geoseg.inference import (
    greedy_selection,
    read_selection,
    select_ensemble,
    selection_record,
    write_selection,
)
from geoseg.models import MODEL_REGISTRY, save_model

from conftest import REPO_ROOT, tiny_unetformer

SCRIPT = REPO_ROOT / "evaluation" / "select_ensemble.py"
CLASSES = ("a", "b", "c")
IGNORE = 255
# Two Val tiles of "kinds" (the image's red value / 50); the ground truth of a pixel is its kind,
# but for one ignored pixel. Counted pixels: 3 of each kind.
KINDS = {"tile_0": [[0, 0, 1], [1, 2, 2]], "tile_1": [[2, 0], [1, 1]]}
MASKS = {"tile_0": [[0, 0, 1], [1, 2, 2]], "tile_1": [[2, 0], [1, IGNORE]]}


class LookupNet(nn.Module):
    """Logits ``table[kind]`` at every pixel, kind = red value / 50: known outputs per pixel."""

    def __init__(self, table: list[list[float]]):
        super().__init__()
        self.init_args = {"table": table}
        self.table = nn.Parameter(torch.tensor(table))

    def forward(self, x):
        kind = (x[:, 0] / 50).round().long()  # (B, H, W)
        return self.table[kind].permute(0, 3, 1, 2)


# One-hot on the right class: perfect on Val.
PERFECT = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]
ALWAYS_A = [[100.0, 0.0, 0.0]] * 3
ALWAYS_B = [[0.0, 100.0, 0.0]] * 3
# Complementary: A is right on kinds 0 and 1 and says b on kind 2; B always says c. With counts
# (a, b), kinds 0 and 1 are right iff 3a > b, kind 2 iff 2.5b > a.
COMPLEMENT_A = [[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 1.0, 0.0]]
COMPLEMENT_B = [[0.0, 0.0, 1.0], [0.0, 0.0, 1.0], [0.0, 0.0, 2.5]]


@pytest.fixture(autouse=True)
def lookup_models(monkeypatch):
    monkeypatch.setitem(MODEL_REGISTRY, LookupNet.__name__, LookupNet)


@pytest.fixture
def val_dir(tmp_path):
    root = tmp_path / "data" / "Val"
    for folder in ("images_png", "masks_png"):
        (root / folder).mkdir(parents=True)
    for stem, kinds in KINDS.items():
        red = np.array(kinds, dtype=np.uint8) * 50
        bgr = np.stack([np.zeros_like(red), np.zeros_like(red), red], axis=-1)
        cv2.imwrite(str(root / "images_png" / f"{stem}.png"), bgr)
        cv2.imwrite(str(root / "masks_png" / f"{stem}.png"), np.array(MASKS[stem], np.uint8))
    return root


def select(val_dir, tables, rounds):
    val = TargetDataset(val_dir.parent, "Val", num_classes=3)
    models = [LookupNet(table) for table in tables]
    return select_ensemble(models, val, CLASSES, rounds=rounds, precision="fp32")


def test_a_perfect_member_is_chosen_every_round(val_dir):
    selection = select(val_dir, [ALWAYS_A, ALWAYS_B, PERFECT], rounds=10)
    assert selection.added == [2] * 10
    assert selection.counts == [0, 0, 10] and selection.weights == [0.0, 0.0, 1.0]
    assert selection.round_mIoU == [1.0] * 10
    # alone: "always a" has IoU 3/9 on a, 0 on b and c (c has support): 1/9; "always b" alike
    assert selection.member_mIoU == pytest.approx([1 / 9, 1 / 9, 1.0])
    # equal weights: logits [101, 100, 0], [100, 101, 0], [100, 100, 1] -> a, b, a: kind 2 is
    # predicted a; IoU a = 3/6, b = 3/3, c = 0 -> 0.5
    assert selection.equal_weight_mIoU == pytest.approx(0.5)


def test_complementary_members_give_the_hand_traced_counts(val_dir):
    # round 1: A alone (IoU a 1, b 3/6, c 0: 0.5) beats B alone (1/9);
    # 2: (1,1) perfect, (2,0) as A -> B;  3: (2,1) and (1,2) both perfect, tie -> A (earlier);
    # 4: (3,1) kind 2 wrong, (2,2) perfect -> B;  5, 6: ties of perfect ensembles -> A, A
    selection = select(val_dir, [COMPLEMENT_A, COMPLEMENT_B], rounds=6)
    assert selection.added == [0, 1, 0, 1, 0, 0]
    assert selection.counts == [4, 2]
    assert selection.weights == pytest.approx([4 / 6, 2 / 6])
    assert selection.round_mIoU == pytest.approx([0.5, 1, 1, 1, 1, 1])
    assert selection.member_mIoU == pytest.approx([0.5, 1 / 9])
    assert selection.equal_weight_mIoU == 1.0  # (1, 1): 3 > 1 and 2.5 > 1


def test_ignored_pixels_are_left_out(val_dir):
    # the ignored pixel is of kind 1; counting it as class b would not change "perfect", but a
    # member wrong only there would lose IoU: it must score 1.0
    wrong_on_kind_1 = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]]
    val = TargetDataset(val_dir.parent, "Val", num_classes=3)
    selection = select_ensemble([LookupNet(PERFECT)], val, CLASSES, rounds=1, precision="fp32")
    assert selection.member_mIoU == [1.0]
    selection = select_ensemble(
        [LookupNet(wrong_on_kind_1)], val, CLASSES, rounds=1, precision="fp32"
    )
    # kind-1 pixels (3 counted) predicted c: IoU a 1, b 0, c 3/6
    assert selection.member_mIoU == pytest.approx([0.5])


def test_greedy_selection_checks_its_inputs():
    target = torch.tensor([0, 1])
    with pytest.raises(ValueError, match="rounds=0"):
        greedy_selection([torch.zeros(2, 3)], target, CLASSES, rounds=0)
    with pytest.raises(ValueError, match=r"candidate 1: map of shape \(3, 3\); expected \(2, 3\)"):
        greedy_selection([torch.zeros(2, 3), torch.zeros(3, 3)], target, CLASSES)


def test_the_record_round_trips_and_drops_zero_weights(tmp_path, val_dir):
    selection = select(val_dir, [ALWAYS_A, COMPLEMENT_A, COMPLEMENT_B], rounds=2)
    record = selection_record(selection, ["x.ckpt", "a.ckpt", "b.ckpt"], {"merge": "logits"})
    path = tmp_path / "out" / "selection.json"
    write_selection(path, record)
    assert os.listdir(path.parent) == ["selection.json"]  # no temporary file left
    written = json.loads(path.read_text())
    assert written["weights"] == [0.0, 0.5, 0.5] and written["counts"] == [0, 1, 1]
    assert [r["added"] for r in written["rounds"]] == ["a.ckpt", "b.ckpt"]
    assert written["val_mIoU"] == 1.0 and written["merge"] == "logits"
    checkpoints, weights = read_selection(path)
    assert [str(c) for c in checkpoints] == ["a.ckpt", "b.ckpt"] and weights == [0.5, 0.5]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{", "not a readable JSON selection file"),
        ('{"checkpoints": ["a"]}', "expected a JSON object with lists 'checkpoints' and 'weights'"),
        ('{"checkpoints": ["a"], "weights": [0.5, 0.5]}', "2 weights for 1 members"),
        ('{"checkpoints": ["a", "b"], "weights": [0, 0]}', "all zero"),
        ('{"checkpoints": ["a", "b"], "weights": [1, -1]}', "non-negative"),
        ('{"checkpoints": ["a"], "weights": ["1"]}', "expected numbers"),
    ],
)
def test_bad_selection_files_name_the_file(tmp_path, content, message):
    path = tmp_path / "s.json"
    path.write_text(content)
    with pytest.raises((ConfigError, DataError), match=message) as error:
        read_selection(path)
    assert str(path) in str(error.value)
    with pytest.raises(DataError, match="selection file not found"):
        read_selection(tmp_path / "missing.json")


def run_in_process(monkeypatch, *args) -> None:
    """The script's main in this process, where LookupNet is registered."""
    argv = [str(SCRIPT), "--num-workers", "0", "--precision", "fp32", *map(str, args)]
    monkeypatch.setattr(sys, "argv", argv)
    monkeypatch.setenv("GEOSEG_KEEP_FREED_MEMORY", "0")
    runpy.run_path(str(SCRIPT), run_name="__main__")


def test_the_script_writes_the_hand_traced_selection(tmp_path, val_dir, monkeypatch, capsys):
    paths = []
    for name, table in (("a", COMPLEMENT_A), ("b", COMPLEMENT_B)):
        save_model(
            LookupNet(table), tmp_path / f"{name}.ckpt", classes=CLASSES, ignore_index=IGNORE
        )
        paths.append(str(tmp_path / f"{name}.ckpt"))
    output = tmp_path / "selection.json"
    run_in_process(
        monkeypatch,
        "--checkpoints",
        *paths,
        "--val-dir",
        val_dir,
        "--rounds",
        6,
        "--output",
        output,
    )
    record = json.loads(output.read_text())
    assert record["checkpoints"] == paths and record["counts"] == [4, 2]
    assert record["weights"] == pytest.approx([4 / 6, 2 / 6])
    assert [r["val_mIoU"] for r in record["rounds"]] == pytest.approx([0.5, 1, 1, 1, 1, 1])
    assert record["equal_weight_val_mIoU"] == 1.0
    assert record["scales"] == [1.0] and record["flips"] == ["none"]
    assert record["precision"] == "fp32"
    assert "equal-weight ensemble: Val mIoU 100.00" in capsys.readouterr().out
    # bad values: exit 2 with one line naming them
    for changed, message in [
        ({"--rounds": 0}, "argument --rounds: '0': expected an integer of at least 1"),
        ({"--val-dir": tmp_path / "nowhere" / "Val"}, "nowhere/Val/images_png: folder not found"),
        ({"--flips": "none,none"}, "none given more than once"),
    ]:
        flags = {"--checkpoints": paths[0], "--val-dir": val_dir, "--output": output, **changed}
        with pytest.raises(SystemExit) as exit_:
            run_in_process(monkeypatch, *[part for flag in flags.items() for part in flag])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err.strip().splitlines()[-1]


def run_script(*args, cwd=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}  # this checkout's geoseg
    return subprocess.run(
        [sys.executable, str(SCRIPT), "--num-workers", "0", "--precision", "fp32", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )


def test_the_script_on_real_checkpoints(tmp_path, val_dir):
    paths = []
    for seed in (0, 1):
        torch.manual_seed(seed)
        net = tiny_unetformer(3)
        paths.append(tmp_path / f"unet_{seed}.ckpt")
        save_model(net.eval(), paths[-1], classes=CLASSES, ignore_index=IGNORE)
    output = tmp_path / "selection.json"
    result = run_script(
        "--checkpoints", *paths, "--val-dir", val_dir, "--rounds", 3, "--output", output,
        "--flips", "none,h",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(output.read_text())
    assert sum(record["counts"]) == 3 and sum(record["weights"]) == pytest.approx(1.0)
    assert record["rounds"][0]["val_mIoU"] == max(record["member_val_mIoU"])
    assert record["rounds"][0]["added"] == str(paths[np.argmax(record["member_val_mIoU"])])
    assert record["flips"] == ["none", "h"]
