"""create_combined_dataset.py: the OpenEarthMap reader, the remap, the combined layout and its safety."""

import json
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from geoseg.config import load_config
from geoseg.datasets import (
    OEM_TO_TARGET,
    BiodiversityCombinedDataset,
    TargetDataset,
    combined_label_sets,
)
from geoseg.datasets import combine as combine_module
from geoseg.datasets.combine import (
    MANIFEST_NAME,
    CombineSettings,
    build_combined_dataset,
    describe_plan,
    describe_summary,
    plan_combined_dataset,
)
from geoseg.datasets.io import read_image, read_mask
from geoseg.datasets.openearthmap import parse_remap
from geoseg.datasets.synthetic import (
    OEM_STYLES,
    TARGET_STYLE,
    synthesize_tile,
    write_openearthmap_release,
    write_target_dataset,
)
from geoseg.errors import DataError
from geoseg.models import load_model
from geoseg.models.checkpoint import read_checkpoint
from geoseg.training import train

from conftest import REALDATA, REPO_ROOT, file_digest, run_python, write_config

LUT = np.full(256, 255, np.uint8)
LUT[:9] = OEM_TO_TARGET


def tree_digest(root: Path) -> dict[str, str]:
    """Relative path -> content hash (files) or link target (symlinks), for the whole tree."""
    digest = {}
    for path in sorted(root.rglob("*")):
        key = str(path.relative_to(root))
        if path.is_symlink():
            digest[key] = "link:" + os.readlink(path)
        elif path.is_file():
            digest[key] = file_digest(path)
    return digest


@pytest.fixture
def sources(tmp_path):
    """Synthetic target data and a synthetic OpenEarthMap release (2 train images absent)."""
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 6, "Val": 3}, tile_size=32)
    oem = write_openearthmap_release(
        tmp_path / "OpenEarthMap", regions=("alpha", "beta"), tiles_per_region=8, tile_size=48
    )
    return target, oem, tmp_path / "combined"


def build(target, oem, output, workers=1, **settings):
    plan = plan_combined_dataset(CombineSettings(target, oem, output, **settings))
    return build_combined_dataset(plan, workers=workers, progress=False)


def listed(oem: Path, split: str) -> list[str]:
    return (oem / f"{split}.txt").read_text().split()


def run_combine_script(target, oem, output, *flags):
    """create_combined_dataset.py from the three roots, with ``flags``."""
    script = REPO_ROOT / "create_combined_dataset.py"
    roots = ["--target-root", target, "--oem-root", oem, "--output-root", output]
    return run_python(script, *roots, *flags, timeout=120)


def test_builds_the_combined_layout(sources):
    target, oem, output = sources
    summary = build(target, oem, output, workers=2)
    train_images = sorted(p.name for p in (output / "Train/images_png").iterdir())
    target_links = [n for n in train_images if n.startswith("target_")]
    oem_tiles = [n for n in train_images if n.startswith("oem_")]
    assert len(target_links) == 6
    # 16 tiles: 70% train = 11 listed, 2 of them without image.
    assert len(listed(oem, "train")) == 11 and len(oem_tiles) == 9
    assert summary.skipped_missing_image == {"train": 2, "val": 0}
    assert summary.oem_written == {"train": 9, "val": len(listed(oem, "val"))}
    for name in target_links:
        link = output / "Train/images_png" / name
        assert link.is_symlink()
        assert (
            link.resolve() == (target / "Train/images_png" / name.removeprefix("target_")).resolve()
        )
    # Every OpenEarthMap mask is the lookup table applied to its label, pixel for pixel.
    for split, folder in (("train", "Train"), ("val", "Val")):
        for name in listed(oem, split):
            region = name.rsplit("_", 1)[0]
            if not (oem / region / "images" / name).exists():
                continue
            stem = Path(name).stem
            label = read_mask(oem / region / "labels" / name)
            written = read_mask(output / folder / "masks_png" / f"oem_{stem}.png")
            assert np.array_equal(written, LUT[label])
            image = read_image(output / folder / "images_png" / f"oem_{stem}.png")
            assert np.array_equal(image, read_image(oem / region / "images" / name))
    assert BiodiversityCombinedDataset(output, "Train", sources=("oem",))[0]["img"].shape[1:] == (
        48,
        48,
    )
    assert (output / MANIFEST_NAME).is_file()


def test_rerun_changes_nothing_and_sources_stay_untouched(sources):
    target, oem, output = sources
    before = {"target": tree_digest(target), "oem": tree_digest(oem)}
    build(target, oem, output)
    first = tree_digest(output)
    build(target, oem, output)
    assert tree_digest(output) == first
    assert {"target": tree_digest(target), "oem": tree_digest(oem)} == before
    assert sorted(p.name for p in output.parent.iterdir()) == sorted(
        ["biodiversity", "OpenEarthMap", "combined"]
    )  # no staging or previous build left beside it


def test_rerun_with_other_settings_leaves_no_stale_files(sources):
    target, oem, output = sources
    build(target, oem, output, num_oem_train=8)
    build(target, oem, output, num_oem_train=3, num_oem_val=1)
    assert len(list((output / "Train/images_png").glob("oem_*"))) == 3
    assert len(list((output / "Train/masks_png").glob("oem_*"))) == 3
    assert len(list((output / "Val/images_png").iterdir())) == 1


def test_interrupted_build_keeps_the_previous_output(sources, monkeypatch):
    target, oem, output = sources
    build(target, oem, output)
    previous = tree_digest(output)
    calls = []

    def failing_convert(job):
        calls.append(job)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return combine_module.convert_oem_pair(*job)

    monkeypatch.setattr(combine_module, "_convert", failing_convert)
    with pytest.raises(KeyboardInterrupt):
        build(target, oem, output, num_oem_train=4)
    assert tree_digest(output) == previous
    assert not list(output.parent.glob(".combined.*"))  # its staging folder is gone


def test_two_builds_of_one_output_at_once_leave_one_whole_build(sources):
    target, oem, output = sources
    build(target, oem, output)
    single = tree_digest(output)
    start = threading.Barrier(3)

    def build_when_started():
        start.wait()
        build(target, oem, output)

    with ThreadPoolExecutor(max_workers=3) as pool:
        builds = [pool.submit(build_when_started) for _ in range(3)]
        for finished in builds:
            finished.result()
    assert tree_digest(output) == single
    assert sorted(p.name for p in output.parent.iterdir()) == sorted(
        ["biodiversity", "OpenEarthMap", "combined"]
    )


def test_oem_scale_resizes_image_bilinear_and_mask_nearest(sources):
    target, oem, output = sources
    build(target, oem, output, oem_scale=0.5)
    mask = read_mask(next((output / "Val/masks_png").iterdir()))
    image = read_image(next((output / "Val/images_png").iterdir()))
    assert mask.shape == (24, 24) and image.shape == (24, 24, 3)
    assert set(np.unique(mask).tolist()) <= set(OEM_TO_TARGET)  # nearest: no blended ids


def test_dry_run_writes_nothing(sources):
    target, oem, output = sources
    result = run_combine_script(target, oem, output, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "convert 9 OpenEarthMap train tiles" in result.stdout
    assert "2 listed without image" in result.stdout
    assert not output.exists()


def test_cli_prints_counts_and_class_shares(sources):
    target, oem, output = sources
    result = run_combine_script(target, oem, output, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert "linked 6 target tiles; wrote OpenEarthMap train 9, val 3" in result.stdout
    assert "OpenEarthMap pixel shares before the remap" in result.stdout
    assert "after the remap (target classes)" in result.stdout


def test_bad_sources_are_clear_errors(sources, tmp_path):
    target, oem, output = sources
    with pytest.raises(DataError, match="nowhere: OpenEarthMap folder not found"):
        plan_combined_dataset(CombineSettings(target, tmp_path / "nowhere", output))
    (oem / "val.txt").write_text("\n")
    with pytest.raises(DataError, match="val.txt: the split list is empty"):
        plan_combined_dataset(CombineSettings(target, oem, output))
    (oem / "val.txt").unlink()
    with pytest.raises(DataError, match="val.txt: split list not found"):
        plan_combined_dataset(CombineSettings(target, oem, output))
    with pytest.raises(DataError, match="needs 9 entries"):
        plan_combined_dataset(CombineSettings(target, oem, output, remap=(0, 1, 2)))
    with pytest.raises(DataError, match="Train/images_png: folder not found"):
        plan_combined_dataset(CombineSettings(tmp_path / "no_target", oem, output))


def test_output_overlapping_a_source_or_foreign_folder_is_refused(sources):
    target, oem, output = sources
    with pytest.raises(DataError, match="overlaps the target root"):
        plan_combined_dataset(CombineSettings(target, oem, target / "combined"))
    with pytest.raises(DataError, match="overlaps the OpenEarthMap root"):
        plan_combined_dataset(CombineSettings(target, oem, oem / "out"))
    output.mkdir()
    (output / "my_notes.txt").write_text("precious")
    with pytest.raises(DataError, match="not made by a combined-dataset build"):
        plan_combined_dataset(CombineSettings(target, oem, output))
    assert (output / "my_notes.txt").read_text() == "precious"


def test_unreadable_tiles_and_unknown_ids_are_counted(sources):
    target, oem, output = sources
    train_names = [
        n for n in listed(oem, "train") if (oem / n.rsplit("_", 1)[0] / "images" / n).exists()
    ]
    broken, odd = train_names[0], train_names[1]
    (oem / broken.rsplit("_", 1)[0] / "images" / broken).write_bytes(b"II*\x00garbage")
    odd_label = oem / odd.rsplit("_", 1)[0] / "labels" / odd
    label = read_mask(odd_label)
    label[0, :4] = (9, 12, 200, 3)
    cv2.imwrite(str(odd_label), label)
    summary = build(target, oem, output)
    assert len(summary.skipped_unreadable) == 1 and broken in summary.skipped_unreadable[0]
    assert summary.tiles_with_unknown_ids == [odd]
    written = read_mask(output / "Train/masks_png" / f"oem_{Path(odd).stem}.png")
    assert written[0, :4].tolist() == [255, 255, 255, OEM_TO_TARGET[3]]
    assert summary.oem_written["train"] == 8


def test_real_openearthmap_tiles_are_remapped_exactly(tmp_path):
    samples = REALDATA / "openearthmap_samples"
    if not samples.is_dir():
        pytest.skip(f"real sample data not found at {samples}")
    release = tmp_path / "OpenEarthMap"  # the release layout, pointing at the read-only samples
    for name in ("houston_16.tif", "palu_8.tif"):
        region = name.rsplit("_", 1)[0]
        for kind in ("images", "labels"):
            (release / region / kind).mkdir(parents=True)
            (release / region / kind / name).symlink_to(samples / kind / name)
    (release / "train.txt").write_text("houston_16.tif\npalu_8.tif\naachen_1.tif\n")
    (release / "val.txt").write_text("palu_8.tif\n")
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 2}, tile_size=32)
    summary = build(target, release, tmp_path / "combined")
    assert summary.oem_written == {"train": 2, "val": 1}
    assert summary.skipped_missing_image == {"train": 1, "val": 0}  # aachen_1 is not on disk
    for name in ("houston_16", "palu_8"):
        label = read_mask(samples / "labels" / f"{name}.tif")
        written = read_mask(tmp_path / "combined/Train/masks_png" / f"oem_{name}.png")
        assert written.shape == (1024, 1024)
        assert np.array_equal(written, LUT[label])
        # Spot-check the table by hand: road (4) and building (8) become settlement (4).
        assert (written[label == 8] == 4).all() and (written[label == 5] == 1).all()
        image = read_image(tmp_path / "combined/Train/images_png" / f"oem_{name}.png")
        assert np.array_equal(image, read_image(samples / "images" / f"{name}.tif"))


def test_synthetic_openearthmap_labels_agree_with_the_target_classes():
    rng = np.random.default_rng(5)
    mild = OEM_STYLES["mild"]
    for _ in range(5):
        tile = synthesize_tile(rng, 48, mild)
        assert np.array_equal(LUT[tile.oem], tile.mask)
        assert tile.oem.max() <= 8
    target_mean = np.mean(
        [synthesize_tile(rng, 48, TARGET_STYLE).image.mean((0, 1)) for _ in range(8)], 0
    )
    oem_mean = np.mean([synthesize_tile(rng, 48, mild).image.mean((0, 1)) for _ in range(8)], 0)
    # The mild OpenEarthMap style is warmer: more red relative to blue than the target style.
    assert oem_mean[0] / oem_mean[2] > 1.1 * target_mean[0] / target_mean[2]


# Appended to conftest's TINY_CONFIG (one epoch, no auxiliary head): step 1's data, the combined
# Train split, validated on the target's Val split and on the combined one.
STEP1_SETTINGS = """
from geoseg.datasets import BiodiversityCombinedDataset

train_loader = DataLoader(
    BiodiversityCombinedDataset("{combined}", "Train", transform=train_transform(32)),
    batch_size=4, shuffle=True, drop_last=True,
)
val_loader = {{
    "target": DataLoader(TargetDataset("{target}", "Val"), batch_size=4),
    "oem": DataLoader(BiodiversityCombinedDataset("{combined}", "Val"), batch_size=4),
}}
lr_scheduler = None
log_name = "step1"
"""


def write_step1_config(path: Path, combined: Path, target: Path) -> Path:
    """A step-1-style config at ``path`` training on ``combined``; its weights in ./weights."""
    write_config(path, data_root=target, weights_path="weights", max_epoch=1, aux_head=False)
    with path.open("a") as file:
        file.write(STEP1_SETTINGS.format(combined=combined, target=target))
    return path


def test_step1_style_training_logs_both_validation_sets(sources, monkeypatch):
    target, oem, output = sources
    build(target, oem, output)
    workdir = output.parent
    config = write_step1_config(workdir / "step1.py", output, target)
    monkeypatch.chdir(workdir)
    train(load_config(config))
    (run_dir,) = (workdir / "lightning_logs" / "step1").iterdir()
    scalars = set(EventAccumulator(str(run_dir)).Reload().Tags()["scalars"])
    assert {"val_mIoU", "val_loss", "val_oem_mIoU", "val_oem_loss", "val_oem_IoU/forest"} <= scalars
    record = read_checkpoint(workdir / "weights" / "last.ckpt")["geoseg_training_data"]
    assert record == {"root": str(output), "remap": list(OEM_TO_TARGET), "label_sets": {}}


def test_oem_image_nodata_becomes_ignore_in_the_converted_mask(tmp_path):
    import rasterio

    from geoseg.datasets.combine import convert_oem_pair
    from geoseg.datasets.openearthmap import OEMPair

    image = np.full((3, 8, 8), 90, np.uint8)
    image[:, :2, :] = 0  # the top two rows are nodata in every band
    label = np.full((8, 8), 5, np.uint8)  # OEM tree -> target forest
    for path, data, nodata in (("img.tif", image, 0), ("lbl.tif", label[None], None)):
        profile = dict(driver="GTiff", width=8, height=8, count=len(data), dtype="uint8")
        with rasterio.open(tmp_path / path, "w", nodata=nodata, **profile) as raster:
            raster.write(data)
    folder = tmp_path / "out"
    for name in ("images_png", "masks_png"):
        (folder / name).mkdir(parents=True)
    pair = OEMPair("tile.tif", tmp_path / "img.tif", tmp_path / "lbl.tif")
    before, after = convert_oem_pair(pair, folder, 1.0, OEM_TO_TARGET, 255)
    mask = read_mask(folder / "masks_png" / "oem_tile.png")
    assert (mask[:2] == 255).all() and (mask[2:] == OEM_TO_TARGET[5]).all()
    assert before[5] == 64 and after[255] == 16 and after[OEM_TO_TARGET[5]] == 48


# --- label sets: remap entries that say "one of these" ------------------------------------------

# bareland -> ignore, rangeland -> forest or grassland
SET_REMAP = (255, 255, (1, 2), 4, 4, 1, 5, 3, 4)
SET_LUT = LUT.copy()
SET_LUT[[1, 2]] = (255, 6)  # the set {1, 2} is the first (only) one: id 6 = 6 classes + 0
SET_VAL_LUT = SET_LUT.copy()
SET_VAL_LUT[2] = 255  # Val is scored: "forest or grassland" cannot count as one class


def test_label_sets_are_written_in_train_ignored_in_val_and_recorded(sources):
    target, oem, output = sources
    plan = plan_combined_dataset(CombineSettings(target, oem, output, remap=SET_REMAP))
    assert plan.label_sets == {6: (1, 2)}
    assert "bareland->ignore, rangeland->forest|grassland" in describe_plan(plan)
    summary = build_combined_dataset(plan, progress=False)
    seen = set()
    for split, folder, lut in (("train", "Train", SET_LUT), ("val", "Val", SET_VAL_LUT)):
        for name in listed(oem, split):
            region = name.rsplit("_", 1)[0]
            if not (oem / region / "images" / name).exists():
                continue
            label = read_mask(oem / region / "labels" / name)
            written = read_mask(output / folder / "masks_png" / f"oem_{Path(name).stem}.png")
            assert np.array_equal(written, lut[label])
            seen |= {(folder, v) for v in np.unique(written).tolist()}
    assert ("Train", 6) in seen and ("Val", 6) not in seen  # rangeland occurs in both lists
    manifest = json.loads((output / MANIFEST_NAME).read_text())
    assert manifest["remap"] == [255, 255, [1, 2], 4, 4, 1, 5, 3, 4]
    assert manifest["label_sets"] == {"6": [1, 2]}
    assert "6 forest|grassland" in describe_summary(summary, plan.label_sets)

    train_set = BiodiversityCombinedDataset(output, "Train")
    assert train_set.label_sets == {6: (1, 2)} and combined_label_sets(output) == {6: (1, 2)}
    assert train_set.remap == manifest["remap"]
    masks = [train_set[i]["gt_semantic_seg"] for i in range(len(train_set))]
    assert any((mask == 6).any() for mask in masks)
    # A reader that does not know the sets refuses the set id, naming it and the file.
    plain = TargetDataset(output, "Train")
    with pytest.raises(DataError, match=r"oem_.*mask values \[6\] are not class ids"):
        for img_id in plain.img_ids:
            plain.load_mask(img_id)
    assert BiodiversityCombinedDataset(output, "Val").label_sets == {6: (1, 2)}


def test_a_build_without_manifest_or_sets_reads_as_before(sources):
    target, oem, output = sources
    build(target, oem, output)
    assert BiodiversityCombinedDataset(output, "Train").label_sets == {}
    (output / MANIFEST_NAME).unlink()
    dataset = BiodiversityCombinedDataset(output, "Train")
    assert dataset.label_sets == {} and dataset.remap is None
    assert dataset.training_data_record() is None


@pytest.mark.parametrize(
    ("remap", "message"),
    [
        ("255,0,7,4,4,1,5,3,4", "remap entry 2 \\(rangeland\\) = 7: 7 is outside the scheme"),
        ("255,0,1|9,4,4,1,5,3,4", "remap entry 2 \\(rangeland\\) = 1\\|9: 9 is not a class id"),
        ("255,0,3|3,4,4,1,5,3,4", "= 3\\|3: repeats an id"),
        ("255,0,1|255,4,4,1,5,3,4", "= 1\\|255: 255 is not a class id"),
        ("255,0,2,4,4,1,5,3,4,4", "needs 9 entries"),
    ],
)
def test_a_remap_outside_the_scheme_is_refused_before_anything_is_written(sources, remap, message):
    target, oem, output = sources
    with pytest.raises(DataError, match=message):
        plan_combined_dataset(CombineSettings(target, oem, output, remap=parse_remap(remap)))
    with pytest.raises(DataError, match="a set needs >= 2 ids"):
        plan_combined_dataset(CombineSettings(target, oem, output, remap=(0,) * 8 + ((1,),)))
    assert not output.exists()


def test_cli_remap_with_a_set_and_a_refused_one(sources):
    target, oem, output = sources
    refused = run_combine_script(target, oem, output, "--remap", "255,255,1|9,4,4,1,5,3,4")
    assert refused.returncode == 2
    assert "argument --remap: remap entry 2 (rangeland) = 1|9: 9 is not a class id" in (
        refused.stderr
    )
    assert not output.exists()
    result = run_combine_script(target, oem, output, "--remap", "255,255,1|2,4,4,1,5,3,4")
    assert result.returncode == 0, result.stderr
    assert "rangeland->forest|grassland" in result.stdout
    assert "6 forest|grassland" in result.stdout
    assert json.loads((output / MANIFEST_NAME).read_text())["label_sets"] == {"6": [1, 2]}


def test_training_on_label_sets_uses_the_partial_loss_and_records_the_remap(sources, monkeypatch):
    target, oem, output = sources
    build(target, oem, output, remap=SET_REMAP)
    workdir = output.parent
    config = write_step1_config(workdir / "step1_sets.py", output, target)
    old_loss = "loss = CEDiceLoss(ignore_index=ignore_index)"
    assert old_loss in config.read_text()
    with config.open("a") as file:  # in its place, after the combined loaders: their label sets
        file.write(
            "loss = CEDiceLoss(ignore_index=ignore_index, "
            "label_sets=train_loader.dataset.label_sets)\n"
        )
    monkeypatch.chdir(workdir)
    trainer, module = train(load_config(config))
    assert module.loss.label_sets == {6: (1, 2)}
    assert torch.isfinite(trainer.callback_metrics["train_loss_epoch"])
    checkpoint = read_checkpoint(workdir / "weights" / "last.ckpt")
    assert checkpoint["geoseg_training_data"] == {
        "root": str(output),
        "remap": [255, 255, [1, 2], 4, 4, 1, 5, 3, 4],
        "label_sets": {"6": [1, 2]},
    }
    assert load_model(workdir / "weights" / "last.ckpt")(torch.rand(1, 3, 32, 32) * 255).shape == (
        1,
        6,
        32,
        32,
    )


def test_the_training_data_record_is_found_through_wrappers(sources):
    from torch.utils.data import ConcatDataset, DataLoader, Subset

    from geoseg.training.supervised import training_data_record

    target, oem, output = sources
    build(target, oem, output, remap=SET_REMAP)
    combined = BiodiversityCombinedDataset(output, "Train")
    plain = TargetDataset(target, "Train")
    expected = combined.training_data_record()
    assert expected["label_sets"] == {"6": [1, 2]}
    wrapped = DataLoader(ConcatDataset([plain, Subset(combined, [0, 1])]))
    assert training_data_record(wrapped) == expected
    assert training_data_record({"a": wrapped, "b": DataLoader(combined)}) == expected
    assert training_data_record(DataLoader(plain)) is None
    assert training_data_record(None) is None
