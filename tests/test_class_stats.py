"""Class statistics of a split and the class-weight schemes, against hand-computed values."""

import json
import subprocess
import sys
from fractions import Fraction

import cv2
import numpy as np
import pytest

from geoseg.classes import CLASSES
from geoseg.classes import IGNORE_INDEX as IGNORE
from geoseg.cli import run_script
from geoseg.datasets import WEIGHT_SCHEMES, ClassStatistics, class_statistics, class_weights
from geoseg.datasets.io import read_mask
from geoseg.datasets.stats.__main__ import main
from geoseg.errors import DataError

from conftest import REPO_ROOT, chesapeake_samples

# Three 6 x 6 masks (class ids: 0 other, 1 forest, 2 grassland, 3 cropland, 4 settlement, 5 water).
#   tile a: 30 forest, 6 ignore                                   -> 30 labelled
#   tile b: 19 forest, 11 grassland, 6 other                      -> 36 labelled
#   tile c: 14 grassland, 10 other, 9 settlement, 1 cropland, 2 ignore -> 34 labelled
# Totals: other 16, forest 49, grassland 25, cropland 1, settlement 9, water 0 (absent);
# 100 labelled pixels, 8 ignored. The counts are squares, so the inverse-sqrt weights are exact.
HAND_MASKS = {
    "a": np.repeat([1, IGNORE], [30, 6]).reshape(6, 6),
    "b": np.repeat([1, 2, 0], [19, 11, 6]).reshape(6, 6),
    "c": np.repeat([2, 0, 4, 3, IGNORE], [14, 10, 9, 1, 2]).reshape(6, 6),
}
PIXEL_COUNTS = (16, 49, 25, 1, 9, 0)
TILE_COUNTS = (2, 2, 2, 1, 1, 0)
# other: b + c = 36 + 34; forest: a + b = 30 + 36; grassland: b + c; cropland, settlement: c.
PRESENT_TILE_PIXELS = (70, 66, 70, 34, 34, 0)

# Present classes in the order other, forest, grassland, cropland, settlement; water gets 0.
# inverse_frequency ~ 1/n = 1/16, 1/49, 1/25, 1/1, 1/9; over 176400 = 16*49*25*9:
#   11025, 3600, 7056, 176400, 19600, sum 217681, mean 217681/5 -> w = 5 * x / 217681.
# inverse_sqrt_frequency ~ 1/sqrt(n) = 1/4, 1/7, 1/5, 1/1, 1/3; over 420: 105, 60, 84, 420, 140,
#   sum 809 -> w = 5 * x / 809.
# median_frequency: freq = 16/70, 49/66, 25/70, 1/34, 9/34 ~ .229, .742, .357, .029, .265;
#   median 9/34; w' = (9/34)/freq = 315/272, 297/833, 63/85, 9, 1; over 66640 = 17*16*49*5:
#   77175, 23760, 49392, 599760, 66640, sum 816727 -> w = 5 * x / 816727.
HAND_WEIGHTS = {
    "inverse_frequency": [Fraction(5 * x, 217681) for x in (11025, 3600, 7056, 176400, 19600)],
    "inverse_sqrt_frequency": [Fraction(5 * x, 809) for x in (105, 60, 84, 420, 140)],
    "median_frequency": [Fraction(5 * x, 816727) for x in (77175, 23760, 49392, 599760, 66640)],
}


def write_masks(root, split, masks):
    folder = root / split / "masks_png"
    folder.mkdir(parents=True)
    for stem, mask in masks.items():
        assert cv2.imwrite(str(folder / f"{stem}.png"), mask.astype(np.uint8))
    return folder


def counts(pixel_counts, **fields):
    """Statistics of one tile holding ``pixel_counts``, for the weight formulas alone."""
    n = len(pixel_counts)
    total = sum(pixel_counts)
    return ClassStatistics(
        classes=tuple(f"c{i}" for i in range(n)),
        pixel_counts=pixel_counts,
        tile_counts=tuple(int(c > 0) for c in pixel_counts),
        present_tile_pixels=tuple(total if c else 0 for c in pixel_counts),
        num_tiles=1,
        ignored_pixels=0,
        **fields,
    )


@pytest.fixture
def hand_root(tmp_path):
    write_masks(tmp_path, "Train", HAND_MASKS)
    return tmp_path


def test_counts_shares_and_weights_of_hand_made_masks(hand_root):
    stats = class_statistics(hand_root, "Train")
    assert stats.classes == ("other", "forest", "grassland", "cropland", "settlement", "water")
    assert stats.pixel_counts == PIXEL_COUNTS
    assert stats.tile_counts == TILE_COUNTS
    assert stats.present_tile_pixels == PRESENT_TILE_PIXELS
    assert (stats.num_tiles, stats.ignored_pixels) == (3, 8)
    assert stats.pixel_shares() == pytest.approx([0.16, 0.49, 0.25, 0.01, 0.09, 0.0])
    assert stats.tile_shares() == pytest.approx([2 / 3, 2 / 3, 2 / 3, 1 / 3, 1 / 3, 0.0])
    for scheme, expected in HAND_WEIGHTS.items():
        weights = stats.weights(scheme)
        assert weights[:5] == pytest.approx([float(w) for w in expected], rel=1e-12), scheme
        assert weights[5] == 0.0  # water is absent
        assert np.mean(weights[:5]) == pytest.approx(1.0)
    # The default scheme, and the one-line helper for configs.
    assert stats.weights() == stats.weights("inverse_sqrt_frequency")
    assert class_weights(hand_root, "Train", "median_frequency") == stats.weights(
        "median_frequency"
    )
    effective = stats.weights("effective_number")
    assert effective[5] == 0.0 and np.mean(effective[:5]) == pytest.approx(1.0)


def test_effective_number_weights():
    # beta = 0.5, n = 1, 2, 3: E = (1 - 0.5**n) / 0.5 = 1, 3/2, 7/4 -> 1/E = 1, 2/3, 4/7,
    # mean 47/63 -> 63/47, 42/47, 36/47.
    assert counts((1, 2, 3)).weights("effective_number", beta=0.5) == pytest.approx(
        [63 / 47, 42 / 47, 36 / 47]
    )
    # beta = 0: every present class is one effective sample.
    assert counts((1, 5, 0)).weights("effective_number", beta=0.0) == (1.0, 1.0, 0.0)
    # Default beta = 1 - 1/N; N = 4: beta = 3/4, E(1) = 1, E(2) = (1 - 9/16) / (1/4) = 7/4,
    # 1/E = 1, 1, 4/7, mean 6/7 -> 7/6, 7/6, 2/3 (the absent class 0).
    assert counts((1, 1, 2, 0)).weights("effective_number") == pytest.approx(
        [7 / 6, 7 / 6, 2 / 3, 0]
    )
    # Millions of pixels: N = 4e6, n/N = 1/4, 3/4, E ~ N (1 - exp(-n/N)) -> 1/E ~ 1/0.221199,
    # 1/0.527633 = 4.52083, 1.89526 -> 1.409216, 0.590784. A fixed beta = 0.9999 saturates:
    # beta**n < 1e-43 for both classes, so both get the same weight.
    large = counts((1_000_000, 3_000_000))
    assert large.weights("effective_number") == pytest.approx([1.409216, 0.590784], rel=1e-6)
    assert large.weights("effective_number", beta=0.9999) == pytest.approx([1.0, 1.0])


def test_weight_argument_errors():
    stats = counts((1, 2))
    with pytest.raises(ValueError, match="inverse_frequency.*effective_number"):
        stats.weights("focal")
    for beta in (1.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match=r"\[0, 1\)"):
            stats.weights("effective_number", beta=beta)
    with pytest.raises(ValueError, match="effective_number"):
        stats.weights("median_frequency", beta=0.9)
    with pytest.raises(DataError, match="no labelled pixel"):
        counts((0, 0)).weights()


def test_save_load_round_trip_and_bad_files(hand_root, tmp_path):
    stats = class_statistics(hand_root, "Train")
    path = tmp_path / "out" / "stats.json"
    stats.save(path)
    assert ClassStatistics.load(path) == stats
    data = json.loads(path.read_text())
    assert data == stats.to_dict()
    assert set(data["weights"]) == set(WEIGHT_SCHEMES)
    assert data["weights"]["median_frequency"] == list(stats.weights("median_frequency"))
    assert data["pixel_counts"] == list(PIXEL_COUNTS)
    assert ClassStatistics.from_dict(data) == stats
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file

    missing = tmp_path / "missing.json"
    with pytest.raises(DataError, match="missing.json: class statistics not found"):
        ClassStatistics.load(missing)
    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"classes": [')
    with pytest.raises(DataError, match="garbled.json: not a readable JSON"):
        ClassStatistics.load(garbled)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"classes": ["a"], "pixel_counts": [1]}))
    with pytest.raises(DataError, match=r"partial.json: class statistics lack \['tile_counts'"):
        ClassStatistics.load(partial)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**data, "pixel_counts": [1, 2]}))
    with pytest.raises(DataError, match="wrong.json: invalid class statistics: pixel_counts has 2"):
        ClassStatistics.load(wrong)


def test_bad_masks_and_folders_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"nowhere[/\\]Train[/\\]masks_png: folder not found"):
        class_statistics(tmp_path / "nowhere", "Train")
    (tmp_path / "empty" / "Val" / "masks_png").mkdir(parents=True)
    with pytest.raises(DataError, match="masks_png: no masks found"):
        class_statistics(tmp_path / "empty", "Val")
    write_masks(
        tmp_path / "bad", "Train", {"ok": HAND_MASKS["a"], "odd": np.array([[1, 7], [9, 2]])}
    )
    with pytest.raises(DataError, match=r"odd.png: mask values \[7, 9\] are not class ids"):
        class_statistics(tmp_path / "bad", "Train")
    # With two classes, a 2 is no class id either; with ignore 7 the 7s are ignored pixels.
    with pytest.raises(DataError, match=r"mask values \[2, 9\]"):
        class_statistics(tmp_path / "bad", "Train", classes=("a", "b"), ignore_index=7)
    write_masks(tmp_path / "void", "Train", {"a": np.full((2, 2), IGNORE)})
    with pytest.raises(DataError, match="no labelled pixel in the 1 masks"):
        class_statistics(tmp_path / "void", "Train")


def test_cli_prints_the_table_and_writes_the_json(hand_root):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoseg.datasets.stats",
            "--root",
            str(hand_root),
            "--split",
            "Train",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no warning from running a module the package imports
    out = result.stdout
    forest = next(line for line in out.splitlines() if line.startswith("| forest"))
    # 49 pixels, 49.00 %, 2 tiles, 66.67 %, inverse_frequency 5 * 3600 / 217681 = 0.083.
    assert [cell.strip() for cell in forest.split("|")[2:7]] == [
        "49",
        "49.00",
        "2",
        "66.67",
        "0.083",
    ]
    water = next(line for line in out.splitlines() if line.startswith("| water"))
    assert water.count("absent") == len(WEIGHT_SCHEMES)
    assert "3 tiles, 100 labelled pixels, 8 ignored pixels" in out
    path = hand_root / "Train" / "class_statistics.json"
    assert f"wrote {path}" in out
    assert f'ClassStatistics.load("{path}").weights("inverse_sqrt_frequency")' in out
    assert ClassStatistics.load(path) == class_statistics(hand_root, "Train")


def test_cli_errors_are_one_line_and_exit_code_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_script(lambda: main(["--root", str(tmp_path), "--split", "Val"]))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "Val" in err and "masks_png: folder not found" in err


def test_real_chesapeake_val_shares(tmp_path):
    source, remap = chesapeake_samples()
    masks = {p.stem: remap[read_mask(p)] for p in sorted((source / "masks").glob("val_*.png"))}
    assert len(masks) == 8
    write_masks(tmp_path, "Val", masks)
    stats = class_statistics(tmp_path, "Val")
    # Eight 256 x 256 crops, no no-data pixel: 524288 labelled pixels.
    assert stats.pixel_counts == (0, 382369, 137650, 0, 4269, 0)
    assert stats.tile_counts == (0, 8, 7, 0, 3, 0)
    assert stats.ignored_pixels == 0
    shares = stats.pixel_shares()
    # forest 382369 / 524288 = 0.729311, settlement 4269 / 524288 = 0.008142.
    assert round(shares[1] * 100, 2) == 72.93 and round(shares[1] * 100) == 73
    assert round(shares[4] * 100, 2) == 0.81 and round(shares[4] * 100, 1) == 0.8
    weights = stats.weights("median_frequency")
    assert weights[0] == weights[3] == weights[5] == 0.0
    assert weights[4] > weights[2] > weights[1]  # rarer classes weigh more


def test_statistics_of_another_class_scheme_are_refused_on_load(tmp_path):
    masks = tmp_path / "Train" / "masks_png"
    masks.mkdir(parents=True)
    cv2.imwrite(str(masks / "a.png"), np.array([[0, 1], [2, 2]], np.uint8))
    main(["--root", str(tmp_path), "--classes", "bare,tree,water"])
    path = tmp_path / "Train" / "class_statistics.json"
    stats = ClassStatistics.load(path, classes=("bare", "tree", "water"))
    assert stats.pixel_counts == (1, 1, 2)
    with pytest.raises(DataError, match="statistics of the classes bare, tree, water; expected"):
        ClassStatistics.load(path, classes=CLASSES)
