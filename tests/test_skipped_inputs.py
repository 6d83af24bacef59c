"""Inputs are never dropped unnoticed: what a folder holds but a stage does not read is counted and
named, and a tile whose link points nowhere is an error naming it."""

import json
import logging
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from geoseg.datasets import TargetDataset, combine
from geoseg.datasets.io import list_files, scan_folder
from geoseg.datasets.synthetic import write_openearthmap_release, write_target_dataset
from geoseg.errors import DataError
from geoseg.inference import find_inputs


def write_png(path: Path) -> Path:
    cv2.imwrite(str(path), np.zeros((8, 8, 3), np.uint8))
    return path


@pytest.fixture
def mixed_folder(tmp_path) -> Path:
    """Two images, a link to a missing image, a text file, a folder and a hidden temporary."""
    folder = tmp_path / "in"
    folder.mkdir()
    write_png(folder / "a.png")
    write_png(folder / "c.jpg")
    (folder / "b.png").symlink_to(tmp_path / "unmounted" / "b.png")
    (folder / "notes.txt").write_text("field notes")
    (folder / "more").mkdir()
    (folder / ".a.png.tmp").write_bytes(b"half")
    return folder


def test_inference_inputs_name_what_they_skip(mixed_folder, caplog):
    with caplog.at_level(logging.WARNING):
        inputs = find_inputs(mixed_folder)
    assert [p.name for p in inputs] == ["a.png", "c.jpg"]
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warning == (
        f"{mixed_folder}: skipped 3 files: b.png (dangling link), more (a folder), "
        "notes.txt (not an image)"
    )


def test_a_folder_without_images_names_what_it_holds(mixed_folder):
    for name in ("a.png", "c.jpg"):
        (mixed_folder / name).unlink()
    with pytest.raises(DataError) as caught:
        find_inputs(mixed_folder)
    assert str(caught.value) == (
        f"{mixed_folder}: no input images (.png, .jpg, .tif) found; skipped 3 files: b.png "
        "(dangling link), more (a folder), notes.txt (not an image)"
    )


def test_long_lists_are_counted_and_shortened(tmp_path, caplog):
    for index in range(8):
        (tmp_path / f"note_{index}.txt").write_text("")
    write_png(tmp_path / "a.png")
    listing = scan_folder(tmp_path)
    assert list(listing.files) == ["a"] and len(listing.skipped) == 8
    with caplog.at_level(logging.WARNING):
        assert find_inputs(tmp_path) == [tmp_path / "a.png"]
    named = ", ".join(f"note_{index}.txt (not an image)" for index in range(5))
    assert caplog.records[-1].getMessage() == f"{tmp_path}: skipped 8 files: {named} and 3 more"


def test_a_dangling_image_link_in_a_dataset_is_an_error_naming_it(tmp_path):
    root = write_target_dataset(tmp_path / "biodiversity", {"Train": 3, "Val": 1}, tile_size=16)
    images, masks = root / "Train" / "images_png", root / "Train" / "masks_png"
    stem = sorted(list_files(images))[0]
    for folder in (images, masks):  # image and mask on storage that is not mounted
        (folder / f"{stem}.png").unlink()
        (folder / f"{stem}.png").symlink_to(tmp_path / "unmounted" / f"{stem}.png")
    with pytest.raises(DataError) as caught:
        TargetDataset(root, "Train")
    assert str(caught.value) == (
        f"{images}: 1 image link to a missing file: {stem}.png -> "
        f"{tmp_path / 'unmounted' / stem}.png; restore the target (mounted storage?) or remove "
        "the link"
    )


@pytest.fixture
def sources(tmp_path):
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 4, "Val": 1}, tile_size=16)
    oem = write_openearthmap_release(
        tmp_path / "OpenEarthMap", regions=("alpha",), tiles_per_region=6, tile_size=16
    )
    return target, oem, tmp_path / "combined"


def test_combined_build_refuses_a_target_tile_whose_files_are_dangling_links(sources, tmp_path):
    target, oem, output = sources
    for folder in ("images_png", "masks_png"):
        tile = sorted((target / "Train" / folder).iterdir())[0]
        tile.unlink()
        tile.symlink_to(tmp_path / "unmounted" / tile.name)
    with pytest.raises(DataError, match=r"1 image link to a missing file: .*\.png -> .*unmounted"):
        combine.plan_combined_dataset(combine.CombineSettings(target, oem, output))
    assert not output.exists()


def test_combined_summary_names_files_the_target_folders_hold_besides_tiles(sources):
    target, oem, output = sources
    (target / "Train" / "images_png" / "notes.txt").write_text("field notes")
    (target / "Train" / "masks_png" / "legend.pdf").write_bytes(b"%PDF")
    plan = combine.plan_combined_dataset(combine.CombineSettings(target, oem, output))
    skipped = (
        "skipped 2 files: images_png/notes.txt (not an image), masks_png/legend.pdf (not an image)"
    )
    assert f"link 4 target tiles from {target}/Train ({skipped})" in combine.describe_plan(plan)
    summary = combine.build_combined_dataset(plan, progress=False)
    first = combine.describe_summary(summary).splitlines()[0]
    assert first.startswith(f"linked 4 target tiles ({skipped}); wrote OpenEarthMap train ")
    manifest = json.loads((output / combine.MANIFEST_NAME).read_text())
    assert manifest["summary"]["target_skipped"] == {
        "images_png/notes.txt": "not an image",
        "masks_png/legend.pdf": "not an image",
    }
    links = sorted(os.listdir(output / "Train" / "images_png"))
    assert sum(name.startswith("target_") for name in links) == 4
