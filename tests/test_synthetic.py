"""The synthetic data generator: the target and the mild second domain as they always were; the
strong second domain's class mix, label meanings, colours and georeference."""

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from geoseg.classes import IGNORE_INDEX, OEM_TO_TARGET
from geoseg.datasets import synthetic
from geoseg.datasets.io import read_image_and_valid, read_mask
from geoseg.datasets.synthetic import (
    DESERT,
    FOREST,
    NUM_CLASSES,
    OEM_BARELAND,
    OEM_RANGELAND,
    OEM_STYLES,
    OEM_TREE,
    OEM_VOID,
    SHORE,
    TARGET_GSD_M,
    TARGET_STYLE,
    describe_labels,
    synthesize_tile,
    write_openearthmap_release,
    write_target_dataset,
)

from conftest import tree_sha256

LUT = np.full(256, IGNORE_INDEX, np.uint8)
LUT[:9] = OEM_TO_TARGET
STRONG = OEM_STYLES["strong"]

# Hashes of the files that the generator wrote before the domain-gap setting existed (commit
# 4fea3e7), for TINY_ARGS: `git show 4fea3e7:geoseg/datasets/synthetic.py > /tmp/orig_synth.py`,
# then with PYTHONPATH=<repo> run its main() with sys.argv = ["x", "--output-root", tmp, *TINY_ARGS]
# and tree_sha256 each dataset. The bytes are OpenCV's PNG/TIFF encoders' (OpenCV 5.1.0): another
# encoder version may change them without changing a pixel.
TINY_ARGS = ["--train", "2", "--val", "1", "--test", "2", "--unlabelled", "1", "--tile-size", "32"]
TINY_ARGS += ["--oem-tiles-per-region", "2", "--oem-tile-size", "32"]
GOLDEN_TARGET = "128d5a4bf0c0b18eb0392dd4adb2c0dadd99406c36d7ba1a9ca2f2edf906db71"
GOLDEN_OEM_MILD = "dad7e7fecd1f4b18134887e3c5bb5adc59c9120e597d46441f4b6b82a91becee"
# The strong second domain's files for TINY_ARGS before the map scenes existed (commit 524de83), by
# the same recipe; GDAL's GeoTIFF bytes (rasterio 1.4.4).
GOLDEN_OEM_STRONG = "483f03ee2c478dadede6cb154077bc1250c00733fc07d3dd6b7b382055441b1c"


def run_main(monkeypatch, output_root: Path, *args: str) -> None:
    argv = ["synthetic", "--output-root", str(output_root), *TINY_ARGS, *args]
    monkeypatch.setattr(sys, "argv", argv)
    synthetic.main()


def tiles(style, count: int = 40, size: int = 64, seed: int = 0) -> list:
    rng = np.random.default_rng(seed)
    return [synthesize_tile(rng, size, style) for _ in range(count)]


def test_mild_gap_and_target_are_the_files_written_before(tmp_path, monkeypatch):
    run_main(monkeypatch, tmp_path / "mild", "--domain-gap", "mild")
    run_main(monkeypatch, tmp_path / "strong")  # the default gap
    assert tree_sha256(tmp_path / "mild" / "OpenEarthMap") == GOLDEN_OEM_MILD
    assert tree_sha256(tmp_path / "strong" / "OpenEarthMap") != GOLDEN_OEM_MILD
    for gap in ("mild", "strong"):
        assert tree_sha256(tmp_path / gap / "biodiversity") == GOLDEN_TARGET


def test_map_scenes_leave_the_other_datasets_as_they_were(tmp_path, monkeypatch):
    run_main(monkeypatch, tmp_path, "--map-scenes", "1", "--map-scene-size", "64")
    assert tree_sha256(tmp_path / "biodiversity") == GOLDEN_TARGET
    assert tree_sha256(tmp_path / "OpenEarthMap") == GOLDEN_OEM_STRONG
    maps = tmp_path / "map_scenes"
    written = sorted(path.relative_to(maps).as_posix() for path in maps.rglob("*.*"))
    assert written == ["images/scene_0000.tif", "map.osm", "truth/scene_0000.tif"]


def test_a_larger_test_split_keeps_the_first_tiles(tmp_path):
    small = write_target_dataset(tmp_path / "small", {"Train": 1, "Test": 2}, tile_size=32)
    large = write_target_dataset(tmp_path / "large", {"Train": 1, "Test": 5}, tile_size=32)
    for path in sorted((small / "Test").rglob("*.png")):
        assert path.read_bytes() == (large / path.relative_to(small)).read_bytes()
    assert len(list((large / "Test" / "images_png").iterdir())) == 5
    assert synthetic.DEMO_SPLIT_SIZES == {"Train": 48, "Val": 16, "Test": 128}


def test_strong_gap_class_mix():
    oem = np.stack([tile.oem for tile in tiles(STRONG)])
    share = np.bincount(oem.ravel(), minlength=9) / oem.size
    assert share[OEM_TREE] < 0.02  # the target's forest is nearly absent (never labelled tree)
    assert share[OEM_BARELAND] > 0.15  # lots of desert
    assert (share[1:] > 0).sum() == 7  # every other class occurs
    target_mask = np.stack([tile.mask for tile in tiles(TARGET_STYLE)])
    assert (target_mask == FOREST).mean() > 0.2  # while the target is forest-dominated


def test_strong_gap_labels_do_not_map_one_to_one():
    sample = tiles(STRONG)
    surface = np.stack([tile.surface for tile in sample])
    oem = np.stack([tile.oem for tile in sample])
    mask = np.stack([tile.mask for tile in sample])
    # Rangeland covers two target classes: forest-textured regions and grass.
    forest_like = surface == FOREST
    assert forest_like.sum() > 1000
    assert set(np.unique(oem[forest_like])) <= {OEM_RANGELAND, OEM_VOID}
    assert set(np.unique(mask[oem == OEM_RANGELAND])) == {FOREST, synthetic.GRASSLAND}
    # Bareland covers desert sand, a surface the target never shows.
    desert = surface == DESERT
    assert desert.mean() > 0.1
    assert set(np.unique(oem[desert])) <= {OEM_BARELAND, OEM_VOID}
    target_surfaces = np.stack([tile.surface for tile in tiles(TARGET_STYLE)])
    assert set(np.unique(target_surfaces)) == {*range(NUM_CLASSES), SHORE}
    # The default remap agrees with the surfaces' target classes but on the forest-like pixels.
    assert np.array_equal(LUT[oem] != mask, forest_like & (oem != OEM_VOID))


def test_mild_gap_labels_map_one_to_one():
    for tile in tiles(OEM_STYLES["mild"], count=8, size=48):
        assert np.array_equal(LUT[tile.oem], tile.mask)


def class_means(sample) -> dict[int, np.ndarray]:
    """Mean RGB of each surface's valid pixels, over all tiles of ``sample``."""
    image = np.stack([tile.image for tile in sample]).reshape(-1, 3).astype(np.float64)
    surface = np.stack([tile.surface for tile in sample]).ravel()
    valid = np.stack([tile.mask != IGNORE_INDEX for tile in sample]).ravel()
    return {s: image[valid & (surface == s)].mean(0) for s in range(NUM_CLASSES)}


def test_strong_gap_colours_differ_per_class():
    target, strong = class_means(tiles(TARGET_STYLE)), class_means(tiles(STRONG))
    for surface in range(NUM_CLASSES):
        distance = np.linalg.norm(strong[surface] - target[surface])
        assert distance > 30, (synthetic.SURFACES[surface], target[surface], strong[surface])


def test_strong_gap_writes_georeferenced_geotiffs(tmp_path):
    root = write_openearthmap_release(
        tmp_path, regions=("alpha",), tiles_per_region=2, tile_size=32, num_missing_images=0
    )
    rng = np.random.default_rng([0, 100])  # the first region's stream
    for index in (1, 2):
        tile = synthesize_tile(rng, 32, STRONG)
        image_path = root / "alpha" / "images" / f"alpha_{index}.tif"
        label_path = root / "alpha" / "labels" / f"alpha_{index}.tif"
        image, valid = read_image_and_valid(image_path)
        assert np.array_equal(image, tile.image) and valid is None  # RGB order, no nodata
        assert np.array_equal(read_mask(label_path), tile.oem)
        for path in (image_path, label_path):
            with rasterio.open(path) as dataset:
                assert dataset.crs.to_epsg() == 32633 and dataset.nodata is None
                assert dataset.res == (TARGET_GSD_M / STRONG.scale, TARGET_GSD_M / STRONG.scale)
                assert dataset.transform.c == 400_000 + (index - 1) * 32 * STRONG.gsd_m


def test_unknown_domain_gap_is_refused(tmp_path):
    with pytest.raises(ValueError, match="mild, strong; got 'huge'"):
        write_openearthmap_release(tmp_path, domain_gap="huge")


def test_docstring_describes_the_strong_labels():
    assert describe_labels(STRONG) in synthetic.__doc__
    assert "5 tree: not used" in describe_labels(STRONG)
