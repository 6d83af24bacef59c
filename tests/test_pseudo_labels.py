"""Pseudo-labelling: thresholds on hand-built maps, class-balanced shares, the CLI's layout,
resuming, refusals, and training on labelled + pseudo-labelled tiles."""

import json
import os
import sys

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.datasets import SelfTrainingDataset, TargetDataset
from geoseg.datasets.io import write_png_atomic
from geoseg.errors import DataError
from geoseg.inference.pseudo_labels import (
    ENSEMBLE_DIR,
    LEVELS,
    class_balanced_thresholds,
    class_histograms,
    confidence_level,
    pseudo_mask,
    write_pseudo_labels,
)
from geoseg.losses import CEDiceLoss
from geoseg.models import MODEL_REGISTRY, save_model

from conftest import REPO_ROOT, write_config


def test_mask_keeps_exactly_the_pixels_at_or_above_the_threshold():
    # a 2 x 3 map: confidences just below, at and above 0.9; class 1 has its own threshold 0.5
    pred = np.array([[0, 0, 0], [1, 1, 2]])
    confidence = np.array([[0.8999, 0.9, 0.95], [0.4999, 0.5, 0.99]])
    mask = pseudo_mask(pred, confidence, [0.9, 0.5, None], IGNORE_INDEX)
    assert mask.dtype == np.uint8
    assert mask.tolist() == [[255, 0, 0], [255, 1, 255]]  # class 2 has no threshold: none kept


def test_written_masks_from_hand_built_probability_maps(tmp_path):
    """Two tiles whose ensemble outputs are written by hand: the masks keep exactly the pixels whose
    stored confidence reaches the threshold's level (equality kept); links point at the tiles."""
    level = confidence_level(0.9)
    assert level == round(0.9 * LEVELS)
    tiles = tmp_path / "tiles"
    tiles.mkdir()
    expected = {}
    for index, levels in enumerate(([[level - 1, level], [level + 1, LEVELS]], [[0, level]] * 2)):
        stem = f"tile_{index}"
        pred = np.array([[3, 4], [5, 0]], dtype=np.uint8)
        write_png_atomic(tiles / f"{stem}.png", np.zeros((2, 2, 3), np.uint8))
        write_png_atomic(tmp_path / "out" / ENSEMBLE_DIR / f"{stem}.png", pred)
        write_png_atomic(
            tmp_path / "out" / ENSEMBLE_DIR / "confidence" / f"{stem}.png",
            np.array(levels, dtype=np.uint16),
        )
        expected[stem] = np.where(np.array(levels) >= level, pred, 255)
    inputs = sorted(tiles.glob("*.png"))
    summary = write_pseudo_labels(tmp_path / "out", inputs, CLASSES, IGNORE_INDEX, threshold=0.9)
    for stem, mask in expected.items():
        written = cv2.imread(str(tmp_path / "out/Train/masks_png" / f"{stem}.png"), -1)
        np.testing.assert_array_equal(written, mask)
        link = tmp_path / "out/Train/images_png" / f"{stem}.png"
        assert link.resolve() == (tiles / f"{stem}.png").resolve()
    assert summary["tiles"] == 2 and summary["pixels"] == 8
    assert summary["kept_share"] == 5 / 8  # tile 0: 3 of 4 pixels, tile 1: 2 of 4
    water = summary["per_class"]["water"]  # class 5: kept once (level + 1), dropped once (0)
    assert (water["predicted_pixels"], water["kept_pixels"], water["kept_share"]) == (2, 1, 0.5)
    assert water["threshold"] == level / LEVELS
    assert json.loads((tmp_path / "out/summary.json").read_text()) == summary
    # a dataset reads the layout
    item = TargetDataset(tmp_path / "out", "Train")[0]
    assert item["gt_semantic_seg"].tolist() == [[255, 4], [5, 0]]


def test_class_balanced_thresholds_keep_each_classes_share():
    # class 0: levels 10..19 (10 pixels); class 1: levels 100, 200, 300, 400; class 2 absent
    pred = np.array([0] * 10 + [1] * 4)
    levels = np.array(list(range(10, 20)) + [100, 200, 300, 400], dtype=np.uint16)
    histograms = class_histograms(pred, levels, num_classes=3)
    assert histograms.sum() == 14 and histograms[0, 10:20].tolist() == [1] * 10
    thresholds = class_balanced_thresholds(histograms, share=0.5)
    assert thresholds == [15, 300, None]  # the top half of each class: 15..19 and 300, 400
    mask = pseudo_mask(pred, levels, thresholds, IGNORE_INDEX)
    assert (mask[:10] == 0).sum() == 5 and (mask[10:] == 1).sum() == 2
    # at least 30%: 3 of 10 pixels, 2 of 4 (1 would be 25%)
    assert class_balanced_thresholds(histograms, share=0.3) == [17, 300, None]
    assert class_balanced_thresholds(histograms, share=0.1 * 3) == [
        17,
        300,
        None,
    ]  # 0.30000000000000004


# --- the command line ---------------------------------------------------------------------------


class CountingNet(nn.Module):
    """A pointwise net (1x1 conv of the image scaled to [0, 1]) that counts the tiles it sees."""

    tiles_seen = 0

    def __init__(self, seed: int = 0):
        super().__init__()
        self.init_args = {"seed": seed}
        self.conv = nn.Conv2d(3, len(CLASSES), 1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(4 * torch.randn(self.conv.weight.shape, generator=generator))

    def forward(self, x):
        CountingNet.tiles_seen += x.shape[0]
        return self.conv(x / 255)


@pytest.fixture
def labelling(tmp_path, monkeypatch):
    """(run(*flags) -> pseudo_label.py's main with those flags, the tiles folder, the output root)."""
    monkeypatch.setitem(MODEL_REGISTRY, CountingNet.__name__, CountingNet)
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    import pseudo_label

    tiles = tmp_path / "unlabelled"
    tiles.mkdir()
    rng = np.random.default_rng(0)
    for index in range(5):
        cv2.imwrite(str(tiles / f"u_{index}.png"), rng.integers(0, 256, (24, 32, 3), np.uint8))
    checkpoints = []
    for seed in (1, 2):
        path = tmp_path / f"model_{seed}.ckpt"
        save_model(CountingNet(seed), path, classes=CLASSES, ignore_index=IGNORE_INDEX)
        checkpoints.append(str(path))
    output = tmp_path / "pseudo"

    def run(*flags, output_root=output):
        argv = ["pseudo_label.py", "--input-dir", str(tiles), "--output-root", str(output_root)]
        argv += ["--checkpoints", *checkpoints, "--scales", "1.0", "--flips", "none"]
        argv += ["--precision", "fp32"]  # hand-computed references: float32 on every CPU
        monkeypatch.setattr(sys, "argv", [*argv, "--num-workers", "0", *map(str, flags)])
        CountingNet.tiles_seen = 0
        pseudo_label.main()
        return CountingNet.tiles_seen

    return run, tiles, output


def test_cli_writes_the_target_layout_and_resumes_without_redoing_tiles(labelling):
    run, tiles, output = labelling
    assert run("--threshold", "0.6") == 10  # 5 tiles x 2 models
    masks = sorted(p.name for p in (output / "Train/masks_png").iterdir())
    assert masks == [f"u_{i}.png" for i in range(5)]
    assert sorted(p.name for p in (output / "Train/images_png").iterdir()) == masks
    ensemble = output / ENSEMBLE_DIR
    # the masks are the ensemble's confident pixels
    pred = cv2.imread(str(ensemble / "u_0.png"), -1)
    levels = cv2.imread(str(ensemble / "confidence/u_0.png"), -1)
    mask = cv2.imread(str(output / "Train/masks_png/u_0.png"), -1)
    np.testing.assert_array_equal(mask, np.where(levels >= confidence_level(0.6), pred, 255))
    assert 0 < (mask != 255).mean() < 1

    # interrupted: two tiles unfinished (one with its confidence written, one with nothing)
    (ensemble / "u_1.png").unlink()
    (ensemble / "u_3.png").unlink()
    (ensemble / "confidence/u_3.png").unlink()
    (ensemble / ".u_4.png.tmp").write_bytes(b"half a png")
    finished = {p: p.stat().st_mtime_ns for p in ensemble.glob("u_[024].png")}
    assert run("--threshold", "0.6") == 4  # 2 tiles x 2 models, nothing else
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())
    assert (ensemble / "u_1.png").is_file() and (ensemble / "u_3.png").is_file()
    assert not list(ensemble.glob(".*.tmp"))
    np.testing.assert_array_equal(cv2.imread(str(output / "Train/masks_png/u_0.png"), -1), mask)

    # another threshold re-derives the masks without predicting again; class-balanced too
    assert run("--threshold", "0.99") == 0
    assert run("--class-balanced", "0.5") == 0
    summary = json.loads((output / "summary.json").read_text())
    for entry in summary["per_class"].values():
        if entry["predicted_pixels"]:
            assert entry["kept_share"] >= 0.5  # ties at the threshold are kept
    # a tile gone from the input folder leaves no mask or link behind
    (tiles / "u_4.png").unlink()
    assert run("--threshold", "0.6") == 0
    assert sorted(p.name for p in (output / "Train/masks_png").iterdir()) == masks[:4]
    assert sorted(p.name for p in (output / "Train/images_png").iterdir()) == masks[:4]
    # other prediction settings are refused
    with pytest.raises(DataError, match="labelled with other settings.*scales"):
        run("--scales", "0.5,1.0")


def test_a_tile_replaced_under_its_name_is_labelled_anew(labelling, tmp_path):
    run, tiles, output = labelling
    replaced = tiles / "u_2.png"
    image = cv2.imread(str(replaced))
    stored = [cv2.IMWRITE_PNG_COMPRESSION, 0]  # uncompressed: the size depends on the shape alone
    cv2.imwrite(str(replaced), image, stored)
    assert run("--threshold", "0.6") == 10
    stat = replaced.stat()
    cv2.imwrite(str(replaced), 255 - image, stored)  # same name, size and time; other content
    os.utime(replaced, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert replaced.stat().st_size == stat.st_size
    assert run("--threshold", "0.6") == 2  # that tile alone, by both models
    fresh = tmp_path / "fresh"
    assert run("--threshold", "0.6", output_root=fresh) == 10
    for name in ("ensemble/u_2.png", "ensemble/confidence/u_2.png", "Train/masks_png/u_2.png"):
        np.testing.assert_array_equal(
            cv2.imread(str(output / name), -1), cv2.imread(str(fresh / name), -1), err_msg=name
        )
    link = output / "Train/images_png/u_2.png"
    np.testing.assert_array_equal(cv2.imread(str(link)), 255 - image)
    assert run("--threshold", "0.6") == 0  # and once labelled anew, it is done


def test_cli_refuses_overlapping_folders_and_names_a_bad_tile(labelling, tmp_path, monkeypatch):
    import pseudo_label

    run, tiles, output = labelling
    for bad_output in (tiles, tiles.parent, tiles / "labels"):
        monkeypatch.setattr(
            sys,
            "argv",
            ["pseudo_label.py", "--input-dir", str(tiles), "--output-root", str(bad_output)]
            + ["--checkpoints", str(tmp_path / "model_1.ckpt")],
        )
        with pytest.raises(DataError, match="overlap"):
            pseudo_label.main()
    # an existing folder this command did not write (e.g. the labelled target root) is refused
    labelled = tmp_path / "biodiversity"
    (labelled / "Train" / "masks_png").mkdir(parents=True)
    monkeypatch.setattr(
        sys,
        "argv",
        ["pseudo_label.py", "--input-dir", str(tiles), "--output-root", str(labelled)]
        + ["--checkpoints", str(tmp_path / "model_1.ckpt"), "--num-workers", "0"],
    )
    with pytest.raises(DataError, match="holds files pseudo_label.py did not write"):
        pseudo_label.main()
    (tiles / "u_2.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="u_2.png"):
        run()


# --- training on labelled + pseudo-labelled tiles ----------------------------------------------


def test_self_training_dataset_draws_the_share_and_keeps_ignore_pixels(tmp_path):
    labelled = [{"id": f"l{i}"} for i in range(6)]
    pseudo = [{"id": f"p{i}"} for i in range(100)]
    dataset = SelfTrainingDataset(labelled, pseudo, pseudo_share=0.25)
    assert len(dataset) == 8  # 6 labelled + 2 pseudo-labelled: a quarter of the epoch
    assert [dataset[i]["id"] for i in range(6)] == [f"l{i}" for i in range(6)]
    torch.manual_seed(0)
    first = [dataset[i]["id"] for i in (6, 7)]
    torch.manual_seed(0)
    assert [dataset[i]["id"] for i in (6, 7)] == first  # a seed reproduces them
    assert all(name.startswith("p") for name in first)
    everything = SelfTrainingDataset(labelled, pseudo[:3], pseudo_share=None)
    assert [everything[i]["id"] for i in range(9)][6:] == ["p0", "p1", "p2"]
    with pytest.raises(ValueError, match="pseudo_share"):
        SelfTrainingDataset(labelled, pseudo, pseudo_share=1.0)


def test_ignore_pixels_of_pseudo_labels_contribute_nothing_to_the_loss():
    torch.manual_seed(0)
    target = torch.randint(0, 6, (2, 8, 8))
    target[:, :4] = IGNORE_INDEX  # half of each tile not confident enough
    logits = torch.randn(2, 6, 8, 8, requires_grad=True)
    loss = CEDiceLoss()
    value = loss(logits, target)
    changed = logits.detach().clone()
    changed[:, :, :4] = 100 * torch.randn(2, 6, 4, 8)  # anything at the ignored pixels
    assert torch.equal(loss(changed, target), value.detach())
    value.backward()
    assert torch.count_nonzero(logits.grad[:, :, :4]) == 0
    # the same as the loss of the kept half alone
    torch.testing.assert_close(loss(logits.detach()[:, :, 4:], target[:, 4:]), value.detach())


def test_a_self_training_config_trains_one_epoch(tmp_path, synthetic_root, monkeypatch):
    from geoseg.config import load_config
    from geoseg.training.run import train

    # pseudo-labels of the Test tiles, half of every mask ignored, as a second Train split
    pseudo = tmp_path / "pseudo" / "Train"
    (pseudo / "masks_png").mkdir(parents=True)
    (pseudo / "images_png").symlink_to(synthetic_root / "Test" / "images_png")
    for mask_path in (synthetic_root / "Test" / "masks_png").iterdir():
        mask = cv2.imread(str(mask_path), -1)
        mask[::2] = IGNORE_INDEX
        cv2.imwrite(str(pseudo / "masks_png" / mask_path.name), mask)
    config = write_config(
        tmp_path / "config.py",
        data_root=synthetic_root,
        weights_path=tmp_path / "weights",
        max_epoch=1,
    )
    text = config.read_text().replace(
        f'TargetDataset("{synthetic_root}", "Train", transform=train_transform(32)),',
        "SelfTrainingDataset(\n"
        f'        TargetDataset("{synthetic_root}", "Train", transform=train_transform(32)),\n'
        f'        TargetDataset("{tmp_path / "pseudo"}", "Train", transform=train_transform(32)),\n'
        "        pseudo_share=0.5,\n    ),",
    )
    assert "SelfTrainingDataset(" in text
    text = text.replace(
        "TargetDataset, train_transform", "SelfTrainingDataset, TargetDataset, train_transform"
    )
    config.write_text(text)
    monkeypatch.chdir(tmp_path)
    loaded = load_config(config)
    assert len(loaded.train_loader.dataset) == 16  # 8 labelled + 8 pseudo-labelled (half)
    trainer, _ = train(loaded)
    assert trainer.global_step == 4  # 16 tiles in batches of 4
    assert os.path.isfile(tmp_path / "weights" / "last.ckpt")


def test_the_demo_step3_config_reads_its_seeds_pseudo_labels(tmp_path, monkeypatch):
    from geoseg.config import load_config
    from geoseg.datasets.synthetic import write_target_dataset
    from geoseg.errors import ConfigError
    from geoseg.training.kd import KD_DEFAULTS, KD_REQUIRED

    monkeypatch.chdir(tmp_path)
    root = write_target_dataset(
        tmp_path / "data/demo/biodiversity", {"Train": 4, "Val": 2}, tile_size=32
    )
    pseudo = tmp_path / "data/demo/pseudo_labels/seed_7/Train"
    pseudo.mkdir(parents=True)
    (pseudo / "images_png").symlink_to(root / "Train" / "images_png")
    (pseudo / "masks_png").symlink_to(root / "Train" / "masks_png")
    config_path = REPO_ROOT / "config" / "demo" / "step3_self_training.py"
    torch.manual_seed(7)  # what --seed 7 does before the config is read
    config = load_config(config_path, KD_REQUIRED, KD_DEFAULTS)
    dataset = config.train_loader.dataset
    assert isinstance(dataset, SelfTrainingDataset) and len(dataset) == 8  # 4 + 4 (half)
    assert config.pretrained_ckpt_path == "model_weights/demo/student_ft_target_kd/last.ckpt"
    assert len(config.val_loader.dataset) == 2  # the target Val only
    torch.manual_seed(8)
    with pytest.raises(ConfigError, match="data/demo/pseudo_labels/seed_8: no pseudo-labels"):
        load_config(config_path, KD_REQUIRED, KD_DEFAULTS)
