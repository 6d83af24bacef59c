"""Rare-class crops: the share of crops that contain a rare class, counted over seeded draws, and
where the crop lands."""

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from geoseg.datasets import RareClassCrop, TargetDataset, train_transform
from geoseg.datasets.transforms import augment
from geoseg.errors import ConfigError

from conftest import rgb, write_pair

RARE = 4  # settlement
BLOB = (slice(31, 33), slice(31, 33))  # a 2x2 blob of the rare class in tile 0
ONLY_RARE = (0, 0, 0, 0, 1, 0)


def write_tiles(root, size=64):
    """Tile 0: class 0 with the rare blob; tiles 1-3: classes 1 (left half) and 2 (right half)."""
    mask = np.zeros((size, size), np.uint8)
    mask[BLOB] = RARE
    write_pair(root, "tile_0", rgb(size, size), mask)
    for index in (1, 2, 3):
        mask = np.full((size, size), 1, np.uint8)
        mask[:, size // 2 :] = 2
        write_pair(root, f"tile_{index}", rgb(size, size), mask)


def share_with_rare(dataset, draws):
    """Fraction of ``draws`` items (indices cycling over the dataset) holding a rare pixel."""
    torch.manual_seed(0)
    hits = sum(
        bool((dataset[i % len(dataset)]["gt_semantic_seg"] == RARE).any()) for i in range(draws)
    )
    return hits / draws


def test_rare_class_crops_raise_the_share_to_the_expected_level(tmp_path):
    write_tiles(tmp_path)
    transform = train_transform(16, scale_range=(1.0, 1.0))
    draws = 2000
    # Uniform 16-px crops of a 64-px tile: 49 offsets per axis, 17 of which (16..32) hold a
    # row/column of the blob (31..32), and one tile in four has it: 1/4 * (17/49)^2 = 0.0301.
    uniform = 0.25 * (17 / 49) ** 2
    baseline = share_with_rare(TargetDataset(tmp_path, transform=transform), draws)
    # p = 0.5 with only the rare class drawn: half the items hold it, the other half are uniform.
    crop = RareClassCrop(p=0.5, class_weights=ONLY_RARE)
    lifted = share_with_rare(
        TargetDataset(tmp_path, transform=transform, rare_class_crop=crop), draws
    )
    expected = 0.5 + 0.5 * uniform  # 0.515
    for share, target in ((baseline, uniform), (lifted, expected)):
        sd = (target * (1 - target) / draws) ** 0.5
        assert abs(share - target) < 4 * sd, (share, target)


def test_the_crop_is_centred_on_the_drawn_pixel(tmp_path):
    mask = np.zeros((64, 64), np.uint8)
    mask[40, 20] = RARE  # one pixel, far from the edges
    write_pair(tmp_path, "tile", rgb(64, 64), mask)
    crop = RareClassCrop(p=1.0, class_weights=ONLY_RARE)
    transform = train_transform(16, scale_range=(1.0, 1.0))
    dataset = TargetDataset(tmp_path, transform=transform, rare_class_crop=crop)
    torch.manual_seed(0)
    for _ in range(50):
        rows, columns = np.nonzero(dataset[0]["gt_semantic_seg"].numpy() == RARE)
        # at (8, 8) of the 16-px crop; a flip or a rotation moves it to 7 or 8 on each axis
        assert len(rows) == 1 and rows[0] in (7, 8) and columns[0] in (7, 8)


@pytest.mark.parametrize("corner", [(63, 63), (0, 63), (0, 0), (125, 125), (125, 0)])
def test_every_crop_holds_the_drawn_class_over_the_scale_range(tmp_path, corner):
    mask = np.zeros((128, 128), np.uint8)
    row, column = corner
    mask[row : row + 3, column : column + 3] = RARE  # 3x3: a nearest downscale keeps some
    write_pair(tmp_path, "tile", rgb(128, 128), mask)
    crop = RareClassCrop(p=1.0, class_weights=ONLY_RARE)  # scales 0.75-1.5
    dataset = TargetDataset(tmp_path, transform=train_transform(32), rare_class_crop=crop)
    torch.manual_seed(0)
    for _ in range(100):
        item = dataset[0]
        assert item["img"].shape == (3, 32, 32)
        assert (item["gt_semantic_seg"] == RARE).any()


def test_tiles_smaller_than_the_crop_are_padded_with_ignore(tmp_path):
    mask = np.full((10, 12), RARE, np.uint8)
    write_pair(tmp_path, "tile", rgb(10, 12), mask)
    dataset = TargetDataset(
        tmp_path,
        transform=train_transform(16, scale_range=(1.0, 1.0)),
        rare_class_crop=RareClassCrop(p=1.0),
    )
    torch.manual_seed(0)
    target = dataset[0]["gt_semantic_seg"]
    assert target.shape == (16, 16)
    assert (target == RARE).sum() == 120 and (target == 255).sum() == 256 - 120


def test_default_weights_draw_the_present_classes_equally(tmp_path):
    write_tiles(tmp_path)
    dataset = TargetDataset(
        tmp_path, transform=train_transform(16), rare_class_crop=RareClassCrop(p=1.0)
    )
    torch.manual_seed(0)
    draws = [dataset._class_index.draw(dataset._class_draw_weights) for _ in range(4000)]
    counts = np.bincount([class_id for class_id, *_ in draws], minlength=6)
    assert counts[3] == counts[5] == 0  # absent from the split: never drawn
    assert np.abs(counts[[0, 1, 2, 4]] / 4000 - 0.25).max() < 0.03
    for class_id, tile, row, column in draws[:200]:  # the position holds the drawn class
        mask = dataset.load_mask(dataset.img_ids[tile])
        assert mask[row, column] == class_id


def test_the_index_samples_at_most_the_given_positions(tmp_path):
    write_tiles(tmp_path)
    crop = RareClassCrop(p=1.0, samples_per_class=10)
    dataset = TargetDataset(tmp_path, transform=train_transform(16), rare_class_crop=crop)
    positions = dataset._class_index.positions
    assert len(positions[0][RARE]) == 4  # the blob's 4 pixels, all kept
    assert len(positions[1][1]) == 10 and len(set(positions[1][1].tolist())) == 10


def test_the_random_crop_is_the_albumentations_pipeline_it_always_was(tmp_path):
    """Without rare-class crops an item is what the plain albumentations pipeline gives, so runs
    made before keep their numbers."""
    plain = A.Compose(
        [
            A.RandomScale(scale_limit=(-0.25, 0.5), interpolation=cv2.INTER_LINEAR, p=1.0),
            A.PadIfNeeded(
                min_height=16, min_width=16, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=255
            ),
            A.RandomCrop(height=16, width=16),
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02, p=0.5),
        ]
    )
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (40, 30, 3), dtype=np.uint8)
    mask = rng.integers(0, 6, (40, 30), dtype=np.uint8)
    for seed in range(5):
        torch.manual_seed(seed)
        expected = augment(plain, image, mask)
        torch.manual_seed(seed)
        got = augment(train_transform(16), image, mask)
        assert all(np.array_equal(a, b) for a, b in zip(expected, got, strict=True))


def test_bad_settings_are_clear_errors(tmp_path):
    write_tiles(tmp_path)
    for p in (1.5, float("nan"), True):
        with pytest.raises(ValueError, match="expected a probability"):
            RareClassCrop(p=p)
    with pytest.raises(ValueError, match="expected weights >= 0"):
        RareClassCrop(class_weights=(1, float("nan"), 1, 1, 1, 1))
    transform = train_transform(16)
    with pytest.raises(ValueError, match="has 3 weights"):
        TargetDataset(
            tmp_path, transform=transform, rare_class_crop=RareClassCrop(class_weights=(1, 1, 1))
        )
    with pytest.raises(ValueError, match="0 on every class present"):
        absent_only = (0, 0, 0, 1, 0, 0)  # cropland: in no tile
        TargetDataset(
            tmp_path, transform=transform, rare_class_crop=RareClassCrop(class_weights=absent_only)
        )
    with pytest.raises(ConfigError, match="rare_class_crop needs transform=train_transform"):
        TargetDataset(tmp_path, rare_class_crop=RareClassCrop())
