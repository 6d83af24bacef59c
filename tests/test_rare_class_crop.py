"""Rare-class crops: the share of crops that contain a rare class, counted over seeded draws."""

import logging

import numpy as np
import pytest
import torch
from test_datasets import rgb, write_pair

from geoseg.datasets import TargetDataset, train_transform
from geoseg.datasets.rare_class_crop import RareClassCrop, crop_window

RARE = 4  # settlement
BLOB = (slice(31, 33), slice(31, 33))  # a 2x2 blob of the rare class in tile 0


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


ONLY_RARE = (0, 0, 0, 0, 1, 0)


def test_window_side_covers_the_smallest_scale():
    assert RareClassCrop(512).window == 683  # ceil(512 / 0.75)
    assert RareClassCrop(16, scale_range=(1.0, 1.0)).window == 16


def test_crop_window_is_centred_and_moved_inside_at_the_edges():
    mask = np.arange(100, dtype=np.uint8).reshape(10, 10)
    image = np.stack([mask] * 3, axis=2)
    _, window = crop_window(image, mask, 5, 5, 4)  # rows/columns 3..6
    assert window[0, 0] == 33 and window.shape == (4, 4)
    _, window = crop_window(image, mask, 0, 9, 4)  # moved inside: rows 0..3, columns 6..9
    assert window[0, 0] == 6 and window[-1, -1] == 39
    _, window = crop_window(image[:3], mask[:3], 1, 5, 4)  # shorter than the side: all rows
    assert window.shape == (3, 4)


def test_rare_class_crops_raise_the_share_to_the_expected_level(tmp_path):
    write_tiles(tmp_path)
    transform = train_transform(16, scale_range=(1.0, 1.0))
    draws = 2000
    # Uniform 16-px crops of a 64-px tile: 49 offsets per axis, 17 of which (16..32) hold a
    # row/column of the blob (31..32), and one tile in four has it: 1/4 * (17/49)^2 = 0.0301.
    uniform = 0.25 * (17 / 49) ** 2
    baseline = share_with_rare(TargetDataset(tmp_path, transform=transform), draws)
    # p = 0.5 with only the rare class drawn: half the items hold it, the other half are uniform.
    crop = RareClassCrop(16, p=0.5, class_weights=ONLY_RARE, scale_range=(1.0, 1.0))
    lifted = share_with_rare(
        TargetDataset(tmp_path, transform=transform, rare_class_crop=crop), draws
    )
    expected = 0.5 + 0.5 * uniform  # 0.515
    for share, target in ((baseline, uniform), (lifted, expected)):
        sd = (target * (1 - target) / draws) ** 0.5
        assert abs(share - target) < 4 * sd, (share, target)


def test_every_crop_holds_the_drawn_pixel_over_the_scale_range(tmp_path):
    mask = np.zeros((128, 128), np.uint8)
    mask[63:66, 63:66] = RARE  # 3x3 pixels: a nearest-neighbour downscale keeps some
    write_pair(tmp_path, "tile", rgb(128, 128), mask)
    crop = RareClassCrop(32, p=1.0, class_weights=ONLY_RARE)  # scales 0.75-1.5, window 43
    dataset = TargetDataset(tmp_path, transform=train_transform(32), rare_class_crop=crop)
    torch.manual_seed(0)
    for _ in range(200):
        item = dataset[0]
        assert item["img"].shape == (3, 32, 32)
        assert (item["gt_semantic_seg"] == RARE).any()


def test_default_weights_draw_the_present_classes_equally(tmp_path):
    write_tiles(tmp_path)
    dataset = TargetDataset(tmp_path, rare_class_crop=RareClassCrop(16, p=1.0))
    torch.manual_seed(0)
    draws = [dataset._class_index.draw(dataset._class_draw_weights) for _ in range(4000)]
    counts = np.bincount([class_id for class_id, *_ in draws], minlength=6)
    assert counts[3] == counts[5] == 0  # absent from the split: never drawn
    assert np.abs(counts[[0, 1, 2, 4]] / 4000 - 0.25).max() < 0.03
    for class_id, tile, row, column in draws[:200]:  # the position holds the drawn class
        mask = dataset.load_mask(dataset.img_ids[tile])
        assert mask[row, column] == class_id
    item = dataset[0]  # the tile actually used is named
    assert item["img_id"] == "tile_0" or (item["gt_semantic_seg"] != RARE).all()


def test_the_index_samples_at_most_the_given_positions(tmp_path):
    write_tiles(tmp_path)
    crop = RareClassCrop(16, p=1.0, samples_per_class=10)
    dataset = TargetDataset(tmp_path, rare_class_crop=crop)
    positions = dataset._class_index.positions
    assert len(positions[0][RARE]) == 4  # the blob's 4 pixels, all kept
    assert len(positions[1][1]) == 10 and len(set(positions[1][1].tolist())) == 10


def test_no_rare_class_crop_leaves_the_items_unchanged(tmp_path):
    write_tiles(tmp_path)
    transform = train_transform(16)
    plain = TargetDataset(tmp_path, transform=transform)
    never = TargetDataset(tmp_path, transform=transform, rare_class_crop=RareClassCrop(16, p=0))
    for index in range(4):
        torch.manual_seed(index)
        a = plain[index]
        torch.manual_seed(index)
        b = never[index]
        assert torch.equal(a["img"], b["img"]) and a["img_id"] == b["img_id"]


def test_bad_settings_are_clear_errors(tmp_path, caplog):
    write_tiles(tmp_path)
    with pytest.raises(ValueError, match="p=1.5"):
        RareClassCrop(16, p=1.5)
    with pytest.raises(ValueError, match="has 3 weights"):
        TargetDataset(tmp_path, rare_class_crop=RareClassCrop(16, class_weights=(1, 1, 1)))
    with pytest.raises(ValueError, match="0 on every class present"):
        TargetDataset(
            tmp_path, rare_class_crop=RareClassCrop(16, class_weights=(0,) * 3 + (1,) + (0,) * 2)
        )
    with caplog.at_level(logging.WARNING):
        RareClassCrop(16, scale_range=(0.5, 2.0))
    assert "can miss the drawn pixel" in caplog.text
