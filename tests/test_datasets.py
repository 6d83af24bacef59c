"""Target dataset, transforms, image/mask reading and the synthetic data generator."""

import cv2
import numpy as np
import pytest
import torch

from geoseg.datasets import (
    CLASSES,
    IGNORE_INDEX,
    PALETTE,
    TargetDataset,
    colorize_mask,
    image_to_tensor,
    train_transform,
)
from geoseg.datasets.io import read_image, read_mask
from geoseg.datasets.synthetic import synthesize_tile, write_target_dataset
from geoseg.errors import DataError

from conftest import chesapeake_samples, rgb, write_pair


def test_item_keys_and_values_on_the_native_scale(tmp_path):
    image = rgb()
    image[0, 0] = (10, 20, 30)  # stored BGR: R=30, G=20, B=10
    mask = np.zeros((8, 8), np.uint8)
    mask[1, 2] = 5
    mask[3, 3] = IGNORE_INDEX
    write_pair(tmp_path, "tile_a", image, mask)
    item = TargetDataset(tmp_path, "Train")[0]
    assert set(item) == {"img", "gt_semantic_seg", "img_id"}
    assert item["img_id"] == "tile_a"
    assert item["img"].shape == (3, 8, 8) and item["img"].dtype == torch.float32
    assert item["gt_semantic_seg"].dtype == torch.int64
    assert item["gt_semantic_seg"][1, 2] == 5 and item["gt_semantic_seg"][3, 3] == IGNORE_INDEX
    # RGB on the 0-255 scale: the network normalises its input itself
    assert item["img"][:, 0, 0].tolist() == [30.0, 20.0, 10.0]


def test_unmatched_pairs_are_listed(tmp_path):
    write_pair(tmp_path, "a", rgb(), np.zeros((8, 8), np.uint8))
    write_pair(tmp_path, "only_image", rgb(), None)
    write_pair(tmp_path, "only_mask", None, np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match="only_image") as error:
        TargetDataset(tmp_path, "Train")
    assert "only_mask" in str(error.value)


def test_missing_folder_names_the_folder_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"Val/images_png: folder not found.*masks_png"):
        TargetDataset(tmp_path, "Val")


def test_size_mismatch_names_the_file(tmp_path):
    write_pair(tmp_path, "a", rgb(8, 8), np.zeros((8, 9), np.uint8))
    with pytest.raises(DataError, match=r"masks_png/a.png: mask size 9x8 differs"):
        TargetDataset(tmp_path, "Train")[0]


def test_mask_values_outside_the_classes_are_named(tmp_path):
    mask = np.zeros((8, 8), np.uint8)
    mask[0, :3] = (6, 7, 200)
    write_pair(tmp_path, "a", rgb(), mask)
    with pytest.raises(DataError, match=r"a.png: mask values \[6, 7, 200\] are not class ids"):
        TargetDataset(tmp_path, "Train")[0]


def test_colour_coded_mask_points_at_the_palette(tmp_path):
    colour_mask = colorize_mask(np.zeros((8, 8), np.uint8))
    write_pair(tmp_path, "a", rgb(), colour_mask)
    with pytest.raises(DataError, match="colour-coded"):
        TargetDataset(tmp_path, "Train")[0]


def test_corrupt_and_16_bit_images_are_errors(tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    with pytest.raises(DataError, match="broken.png: unreadable"):
        read_image(path)
    cv2.imwrite(str(tmp_path / "deep.png"), np.zeros((4, 4, 3), np.uint16))
    with pytest.raises(DataError, match="deep.png: image dtype is uint16"):
        read_image(tmp_path / "deep.png")


def test_grey_and_rgba_images_become_rgb(tmp_path):
    cv2.imwrite(str(tmp_path / "grey.png"), np.full((4, 5), 77, np.uint8))
    bgra = np.zeros((4, 5, 4), np.uint8)
    bgra[..., :] = (1, 2, 3, 128)
    cv2.imwrite(str(tmp_path / "rgba.png"), bgra)
    assert read_image(tmp_path / "grey.png").shape == (4, 5, 3)
    assert (read_image(tmp_path / "grey.png") == 77).all()
    assert read_image(tmp_path / "rgba.png")[0, 0].tolist() == [3, 2, 1]


def test_train_transform_crops_and_pads_with_ignore():
    image, mask = rgb(20, 24), np.ones((20, 24), np.uint8)
    out = train_transform(64, scale_range=(1.0, 1.0))(image=image, mask=mask)
    assert out["image"].shape == (64, 64, 3) and out["mask"].shape == (64, 64)
    # The 20x24 tile sits inside a 64x64 canvas: the rest of the mask is ignore.
    assert (out["mask"] == 1).sum() == 20 * 24
    assert (out["mask"] == IGNORE_INDEX).sum() == 64 * 64 - 20 * 24


def test_items_are_on_the_native_scale_channels_first():
    image = np.array([[[124, 116, 104], [0, 255, 7]]], dtype=np.uint8)
    tensor = image_to_tensor(image)
    assert tensor.dtype == torch.float32 and tensor.shape == (3, 1, 2)
    assert tensor[:, 0, 0].tolist() == [124.0, 116.0, 104.0]
    assert tensor[:, 0, 1].tolist() == [0.0, 255.0, 7.0]


def test_colorize_mask_uses_the_palette():
    colours = colorize_mask(np.array([[0, 5, IGNORE_INDEX]], np.uint8))
    assert colours[0].tolist() == [list(PALETTE[0]), list(PALETTE[5]), [0, 0, 0]]
    assert len(PALETTE) == len(CLASSES) == 6


def test_synthetic_data_is_deterministic_and_valid(tmp_path):
    tile_a = synthesize_tile(np.random.default_rng(3), 48)
    tile_b = synthesize_tile(np.random.default_rng(3), 48)
    assert all(np.array_equal(a, b) for a, b in zip(tile_a, tile_b, strict=True))
    root = write_target_dataset(tmp_path / "synth", {"Train": 12}, tile_size=48, seed=0)
    dataset = TargetDataset(root, "Train")  # every mask passes the dataset's checks
    masks = np.stack([dataset.load_pair(img_id)[1] for img_id in dataset.img_ids])
    assert set(np.unique(masks).tolist()) <= {*range(len(CLASSES)), IGNORE_INDEX}
    assert len(set(np.unique(masks).tolist()) - {IGNORE_INDEX}) >= 5  # most classes occur


def test_real_chesapeake_tiles_load_after_remap(tmp_path):
    source, remap = chesapeake_samples()
    for image_path in sorted((source / "images").glob("train_*.png")):
        raw = read_mask(source / "masks" / image_path.name)
        write_pair(tmp_path, image_path.stem, cv2.imread(str(image_path)), remap[raw])
    dataset = TargetDataset(tmp_path, "Train")
    assert len(dataset) == 8
    item = dataset[0]
    assert item["img"].shape == (3, 256, 256)
    # The crops are mostly forest (Chesapeake code 2).
    forest_share = np.mean([(dataset[i]["gt_semantic_seg"] == 1).float().mean() for i in range(8)])
    assert forest_share > 0.5
