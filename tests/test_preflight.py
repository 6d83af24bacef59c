"""The pre-flight of a combined dataset: class shares, lacking classes, GSDs, bands and warnings."""

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoseg.classes import CLASSES
from geoseg.datasets.combine import (
    MANIFEST_NAME,
    CombineSettings,
    build_combined_dataset,
    plan_combined_dataset,
)
from geoseg.datasets.io import (
    METRES_PER_DEGREE,
    ground_sampling_distance,
    pixel_size,
    read_image,
    read_mask,
    write_png_atomic,
)
from geoseg.datasets.preflight import (
    PREFLIGHT_FILE,
    GSDUnknownError,
    auto_oem_scale,
    estimate_gsd,
    run_preflight,
)
from geoseg.datasets.synthetic import write_openearthmap_release, write_target_dataset
from geoseg.errors import DataError

from conftest import REALDATA, REPO_ROOT, run_python

OTHER, FOREST, GRASSLAND, CROPLAND, SETTLEMENT, WATER = range(6)


def write_geotiff(path: Path, array: np.ndarray, gsd, crs="EPSG:32633", origin=(500_000, 6e6)):
    """``array`` ((H, W) or (H, W, 3) uint8) as a GeoTIFF of ``gsd`` ((x, y) or one number) pixels
    in ``crs`` units, its top-left corner at ``origin``."""
    x, y = gsd if isinstance(gsd, tuple) else (gsd, gsd)
    bands = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = dict(driver="GTiff", width=array.shape[1], height=array.shape[0], dtype="uint8")
    transform = from_origin(*origin, x, y)
    with rasterio.open(path, "w", count=len(bands), crs=crs, transform=transform, **profile) as out:
        out.write(bands)


def georeference_release(oem: Path, gsd: float) -> None:
    """Rewrite every image of a synthetic OpenEarthMap release as a GeoTIFF of ``gsd`` metres."""
    for path in oem.glob("*/images/*.tif"):
        write_geotiff(path, read_image(path), gsd)


def build(target, oem, output, **settings):
    plan = plan_combined_dataset(CombineSettings(target, oem, output, **settings))
    return build_combined_dataset(plan, progress=False)


def hand_built(
    root: Path,
    target_masks: list[np.ndarray],
    oem_masks: list[np.ndarray],
    *,
    oem_gsd: float | None = None,
    oem_scale: float = 1.0,
    target_gsd: float | None = None,
    label_sets: dict | None = None,
    same_images: bool = False,
) -> Path:
    """A combined Train split of the given masks (random images; ``same_images``: the OpenEarthMap
    tiles reuse the target's), its manifest, and an OpenEarthMap release whose images are GeoTIFFs
    of ``oem_gsd`` metres (None: not georeferenced)."""
    rng = np.random.default_rng(0)
    combined, oem = root / "combined", root / "OpenEarthMap"
    images = []
    for prefix, masks in (("target_t", target_masks), ("oem_alpha_", oem_masks)):
        for index, mask in enumerate(masks, start=1):
            if same_images and prefix == "oem_alpha_":
                image = images[index - 1]
            else:
                image = rng.integers(0, 256, (*mask.shape, 3), dtype=np.uint8)
                images.append(image)
            write_png_atomic(combined / "Train/images_png" / f"{prefix}{index}.png", image)
            write_png_atomic(combined / "Train/masks_png" / f"{prefix}{index}.png", mask)
    names = [f"alpha_{index}.tif" for index in range(1, len(oem_masks) + 1)]
    for name, mask in zip(names, oem_masks, strict=True):
        image = np.zeros((*mask.shape, 3), np.uint8)
        if oem_gsd is None:
            cv2.imwrite(str(oem / "alpha/images" / name), image)
        else:
            write_geotiff(oem / "alpha/images" / name, image, oem_gsd)
        write_geotiff(oem / "alpha/labels" / name, np.zeros(mask.shape, np.uint8), 1.0)
    (oem / "train.txt").write_text("".join(f"{name}\n" for name in names))
    settings = {
        "target_root": str(root / "biodiversity"),
        "oem_root": str(oem),
        "oem_scale": oem_scale,
        "ignore_index": 255,
        "target_gsd": target_gsd,
    }
    if label_sets is not None:
        settings["label_sets"] = label_sets
    (combined / MANIFEST_NAME).write_text(json.dumps({"settings": settings, "summary": {}}))
    return combined


def mask_of(counts: dict[int, int], side: int, seed: int = 0) -> np.ndarray:
    """A (side, side) mask holding ``counts[id]`` pixels of each id, shuffled."""
    values = np.concatenate([np.full(n, i, np.uint8) for i, n in counts.items()])
    assert values.size == side * side
    return np.random.default_rng(seed).permutation(values).reshape(side, side)


def run_script(*args, timeout=120):
    return run_python(*args, timeout=timeout, cwd=REPO_ROOT)


# --- ground sampling distance -------------------------------------------------------------------


def test_ground_sampling_distance_of_projected_geographic_and_plain_rasters(tmp_path):
    tile = np.zeros((10, 20, 3), np.uint8)
    write_geotiff(tmp_path / "utm.tif", tile, 0.3)
    assert ground_sampling_distance(tmp_path / "utm.tif") == pytest.approx(0.3, rel=1e-12)
    write_geotiff(tmp_path / "oblong.tif", tile, (0.3, 0.6))
    size = pixel_size(tmp_path / "oblong.tif")
    assert (size.x, size.y, size.from_degrees) == (pytest.approx(0.3), pytest.approx(0.6), False)
    assert size.gsd == pytest.approx(math.sqrt(0.3 * 0.6))
    # New York State Plane in US survey feet: 2 ft pixels.
    write_geotiff(tmp_path / "feet.tif", tile, 2.0, crs="EPSG:2263", origin=(1e6, 2e5))
    assert ground_sampling_distance(tmp_path / "feet.tif") == pytest.approx(2 * 1200 / 3937)

    # Degrees: 1e-5 per pixel, the raster's centre 5 rows below 60.00005 N, at 60 N.
    write_geotiff(tmp_path / "wgs84.tif", tile, 1e-5, crs="EPSG:4326", origin=(25.0, 60.00005))
    size = pixel_size(tmp_path / "wgs84.tif")
    assert size.from_degrees
    assert size.y == pytest.approx(1e-5 * 111_320)
    assert size.x == pytest.approx(1e-5 * 111_320 * math.cos(math.radians(60.0)))
    assert METRES_PER_DEGREE == 111_320

    write_png_atomic(tmp_path / "tile.png", tile)
    cv2.imwrite(str(tmp_path / "plain.tif"), tile)  # a TIFF without transform or CRS
    assert ground_sampling_distance(tmp_path / "tile.png") is None
    assert ground_sampling_distance(tmp_path / "plain.tif") is None
    with pytest.raises(DataError, match="absent.tif: file not found"):
        ground_sampling_distance(tmp_path / "absent.tif")


def test_estimate_gsd_is_the_median_of_a_sample(tmp_path):
    tile = np.zeros((4, 4), np.uint8)
    for index, gsd in enumerate((0.25, 0.3, 0.5, 2.0)):
        write_geotiff(tmp_path / f"geo_{index}.tif", tile, gsd)
    write_png_atomic(tmp_path / "plain.png", tile)
    estimate = estimate_gsd(sorted(tmp_path.iterdir()))
    assert estimate.metres == pytest.approx(0.4)  # median of 0.25, 0.3, 0.5, 2.0; PNG left out
    assert "4 georeferenced of 5 sampled" in estimate.origin
    sampled = estimate_gsd(sorted(tmp_path.iterdir()), sample_size=2)  # the first and the last
    assert sampled.metres == pytest.approx(0.25) and "1 georeferenced of 2" in sampled.origin
    assert estimate_gsd([tmp_path / "plain.png"]).metres is None


def test_real_openearthmap_gsd_is_read_from_degrees():
    samples = REALDATA / "openearthmap_samples" / "images"
    if not samples.is_dir():
        pytest.skip("real OpenEarthMap sample tiles not available on this machine")
    expected = []
    for path in sorted(samples.glob("*.tif")):
        with rasterio.open(path) as raster:
            transform = raster.transform
            latitude = transform.f + transform.e * raster.height / 2  # north-up
        x = abs(transform.a) * 111_320 * math.cos(math.radians(latitude))
        expected.append(math.sqrt(x * abs(transform.e) * 111_320))
        assert pixel_size(path).from_degrees
    estimate = estimate_gsd(sorted(samples.glob("*.tif")))
    assert estimate.metres == pytest.approx(np.median(expected), rel=1e-9)
    assert 0.4 < estimate.metres < 0.55 and "degrees converted" in estimate.origin


# --- shares, bands, label sets ------------------------------------------------------------------


def test_shares_and_bands_equal_an_independent_count(tmp_path):
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 6}, tile_size=32, seed=3)
    oem = write_openearthmap_release(
        tmp_path / "OpenEarthMap", regions=("alpha", "beta"), tiles_per_region=6, tile_size=40
    )
    output = tmp_path / "combined"
    build(target, oem, output)
    report = run_preflight(output)
    for side, prefix in (("target", "target_"), ("oem", "oem_")):
        counts = np.zeros(256, np.int64)
        pixels = []
        for mask_path in sorted((output / "Train/masks_png").glob(f"{prefix}*.png")):
            mask = cv2.imread(str(mask_path), cv2.IMREAD_UNCHANGED)
            counts += np.bincount(mask.ravel(), minlength=256)
            image = cv2.imread(str(output / "Train/images_png" / mask_path.name))[:, :, ::-1]
            pixels.append(image[mask != 255])
        labelled = counts[:6].sum()
        assert report.pixels[side] == counts[:6].tolist()
        assert report.ignored[side] == counts[255]
        assert report.shares(side) == pytest.approx((100 * counts[:6] / labelled).tolist())
        assert report.ignored_percent(side) == pytest.approx(100 * counts[255] / counts.sum())
        pixels = np.concatenate(pixels).astype(np.float64)
        assert report.bands[side]["mean"] == pytest.approx(pixels.mean(0).tolist(), rel=1e-12)
        assert report.bands[side]["std"] == pytest.approx(pixels.std(0).tolist(), rel=1e-12)
        assert report.bands[side]["pixels"] == len(pixels)
    oem_tiles = len(list((output / "Train/masks_png").glob("oem_*")))
    assert report.tiles == {"target": 6, "oem": oem_tiles} and oem_tiles > 0
    fraction = report.oem_fraction(FOREST)
    assert fraction == report.pixels["oem"][FOREST] / (
        report.pixels["oem"][FOREST] + report.pixels["target"][FOREST]
    )


def test_label_sets_are_rows_of_their_own_and_other_ids_errors(tmp_path):
    target_mask = mask_of({FOREST: 50, GRASSLAND: 50}, 10)
    oem_mask = mask_of({FOREST: 30, GRASSLAND: 20, 6: 40, 7: 5, 255: 5}, 10)
    combined = hand_built(
        tmp_path, [target_mask], [oem_mask], label_sets={"7": [CROPLAND, SETTLEMENT], "6": [1, 2]}
    )
    report = run_preflight(combined)
    assert report.rows == [*CLASSES, "forest|grassland", "cropland|settlement"]
    assert report.row_ids == [0, 1, 2, 3, 4, 5, 6, 7]
    assert report.pixels["oem"] == [0, 30, 20, 0, 0, 0, 40, 5]
    assert report.pixels["target"] == [0, 50, 50, 0, 0, 0, 0, 0]
    assert report.shares("oem")[6] == pytest.approx(100 * 40 / 95)
    rows = {row["name"]: row for row in report.to_dict()["classes"]}
    assert rows["forest|grassland"]["oem_pixels"] == 40 and rows["forest|grassland"]["label_set"]
    assert "forest|grassland" in report.text()

    # The same masks without label sets in the manifest: 6 and 7 are no class ids.
    manifest = json.loads((combined / MANIFEST_NAME).read_text())
    del manifest["settings"]["label_sets"]
    (combined / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"oem_alpha_1.png: mask values \[6, 7\] are not class"):
        run_preflight(combined)
    # A label-set id is an error in the target's masks.
    manifest["settings"]["label_sets"] = {"6": [1, 2], "7": [3, 4]}
    (combined / MANIFEST_NAME).write_text(json.dumps(manifest))
    write_png_atomic(combined / "Train/masks_png/target_t1.png", oem_mask)
    with pytest.raises(DataError, match=r"target_t1.png: mask values \[6, 7\]"):
        run_preflight(combined)
    manifest["settings"]["label_sets"] = {"3": [1, 2]}  # a class id
    (combined / MANIFEST_NAME).write_text(json.dumps(manifest))
    with pytest.raises(DataError, match=r"combined_manifest.json: label set '3'"):
        run_preflight(combined)


# --- warnings -----------------------------------------------------------------------------------


def test_mismatched_pair_warns(tmp_path):
    target = mask_of({FOREST: 100, GRASSLAND: 100, CROPLAND: 100, SETTLEMENT: 50, WATER: 50}, 20)
    oem = mask_of(
        {OTHER: 200, FOREST: 800, GRASSLAND: 200, CROPLAND: 3, SETTLEMENT: 297, 255: 100}, 40
    )
    combined = hand_built(tmp_path, [target], [oem], oem_gsd=0.25, target_gsd=1.0)
    report = run_preflight(combined)
    assert report.lacking("target") == ["other"]
    assert report.lacking("oem") == ["cropland", "water"]
    assert report.target_gsd.metres == 1.0 and report.oem_gsd == pytest.approx(0.25)
    assert report.matching_scale == pytest.approx(0.25)
    warnings = report.warnings
    assert len(warnings) == 7, warnings
    assert "class 'other' is absent (0 pixels) in the target tiles but 13.33%" in warnings[0]
    assert "class 'cropland' is nearly absent (0.20%) in the OpenEarthMap tiles" in warnings[1]
    assert "class 'water' is absent (0 pixels) in the OpenEarthMap tiles but 12.50%" in warnings[2]
    assert "differ 4.00x" in warnings[3] and "scale of 0.25 would match" in warnings[3]
    # OpenEarthMap holds 800/900 of forest, 200/300 of grassland, 297/347 of settlement.
    assert [w.split("'")[1] for w in warnings[4:]] == ["forest", "grassland", "settlement"]
    assert "88.9%" in warnings[4] and "(800 of 900)" in warnings[4]
    text = report.text()
    assert [line[len("WARNING: ") :] for line in text.splitlines() if "WARNING" in line] == warnings

    # The GSD warning fires the other way round too: OpenEarthMap coarser than the target.
    report = run_preflight(combined, target_gsd=0.1)
    assert any("differ 2.50x" in w for w in report.warnings)


def test_matched_pair_gives_no_warning(tmp_path):
    # Same masks and images on both sides (each side holds exactly half of every class); water
    # nearly absent on both sides is listed but no warning; 0.25 m scaled by 0.5 is the target's 0.5.
    masks = [
        mask_of(
            {OTHER: 99, FOREST: 100, GRASSLAND: 100, CROPLAND: 50, SETTLEMENT: 50, WATER: 1}, 20
        )
    ]
    combined = hand_built(
        tmp_path, masks, masks, oem_gsd=0.25, oem_scale=0.5, target_gsd=0.5, same_images=True
    )
    report = run_preflight(combined)
    assert report.warnings == []
    assert report.lacking("target") == report.lacking("oem") == ["water"]
    assert report.oem_gsd == pytest.approx(0.5) and report.matching_scale == pytest.approx(0.5)
    assert report.bands["target"] == report.bands["oem"]
    assert "no warnings" in report.text() and "WARNING" not in report.text()


def test_preflight_without_known_gsds_says_unknown(tmp_path):
    mask = mask_of({FOREST: 100}, 10)
    report = run_preflight(hand_built(tmp_path, [mask], [mask], same_images=True))
    assert report.target_gsd.metres is None and report.oem_gsd is None
    assert report.matching_scale is None and report.warnings == []
    assert "target: unknown: none of the 1 sampled images carries a georeference" in report.text()


# --- --oem-scale auto and the command lines -----------------------------------------------------


@pytest.fixture
def sources(tmp_path):
    """Synthetic target data (PNG) and a synthetic OpenEarthMap release of 0.25 m GeoTIFFs."""
    target = write_target_dataset(tmp_path / "biodiversity", {"Train": 4, "Val": 2}, tile_size=32)
    oem = write_openearthmap_release(
        tmp_path / "OpenEarthMap", regions=("alpha",), tiles_per_region=6, tile_size=48
    )
    georeference_release(oem, 0.25)
    return target, oem, tmp_path / "combined"


def test_auto_scale_is_oem_gsd_over_target_gsd(sources, tmp_path):
    target, oem, _ = sources
    assert auto_oem_scale(target, oem, target_gsd=1.0) == (0.25, "auto: 0.25 m / 1.00 m")
    # The target's GSD read from its rasters when they carry one.
    geo_target = tmp_path / "geo_target"
    for path in (target / "Train/images_png").iterdir():
        write_geotiff(geo_target / "Train/images_png" / f"{path.stem}.tif", read_image(path), 0.5)
    assert auto_oem_scale(geo_target, oem) == (0.5, "auto: 0.25 m / 0.50 m")
    with pytest.raises(GSDUnknownError, match="target's ground sampling distance is unknown"):
        auto_oem_scale(target, oem)


def test_build_with_auto_scale_writes_matched_tiles_and_the_preflight(sources):
    target, oem, output = sources
    result = run_script(
        REPO_ROOT / "create_combined_dataset.py",
        *("--target-root", target, "--oem-root", oem, "--output-root", output),
        *("--oem-scale", "auto", "--target-gsd", "0.5", "--workers", "1"),
    )
    assert result.returncode == 0, result.stderr
    assert "OpenEarthMap tiles scaled by 0.5 (auto: 0.25 m / 0.50 m)" in result.stdout
    mask = read_mask(next((output / "Train/masks_png").glob("oem_*.png")))
    assert mask.shape == (24, 24)  # 48 px of 0.25 m as 0.5 m pixels
    settings = json.loads((output / MANIFEST_NAME).read_text())["settings"]
    assert settings["oem_scale"] == 0.5 and settings["target_gsd"] == 0.5
    saved = json.loads((output / PREFLIGHT_FILE).read_text())
    assert saved["gsd"]["oem"] == pytest.approx(0.5) and saved["gsd"]["target"]["metres"] == 0.5
    assert not any("ground sampling" in w for w in saved["warnings"])
    assert saved["text"] in result.stdout
    assert [line for line in result.stdout.splitlines() if line.startswith("WARNING:")] == [
        f"WARNING: {w}" for w in saved["warnings"]
    ]
    assert sorted(p.name for p in output.iterdir()) == [
        "Train",
        "Val",
        MANIFEST_NAME,
        PREFLIGHT_FILE,
    ]  # no temporary file left


def test_auto_scale_without_a_target_gsd_is_a_one_line_error(sources):
    target, oem, output = sources
    result = run_script(
        REPO_ROOT / "create_combined_dataset.py",
        *("--target-root", target, "--oem-root", oem, "--output-root", output),
        *("--oem-scale", "auto"),
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "--oem-scale auto: the target's ground sampling distance is unknown" in line
    assert "Train/images_png" in line and line.endswith("give it in metres with --target-gsd")
    assert not output.exists()


def test_preflight_command_line(sources, tmp_path):
    target, oem, output = sources
    build(target, oem, output)
    result = run_script(
        *("-m", "geoseg.datasets.preflight", "--combined-root", output),
        *("--target-gsd", "1", "--output", tmp_path / "elsewhere.json"),
    )
    assert result.returncode == 0, result.stderr
    saved = json.loads((tmp_path / "elsewhere.json").read_text())
    assert saved["gsd"]["target"] == {"metres": 1.0, "origin": "given"}
    assert saved["gsd"]["oem"] == pytest.approx(0.25)
    assert saved["gsd"]["matching_oem_scale"] == pytest.approx(0.25)
    assert any("differ 4.00x" in w for w in saved["warnings"])
    assert saved["text"] in result.stdout and not (output / PREFLIGHT_FILE).exists()

    result = run_script("-m", "geoseg.datasets.preflight", "--combined-root", tmp_path / "nowhere")
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert "nowhere: combined dataset folder not found" in line
    with pytest.raises(DataError, match="biodiversity/combined_manifest.json: manifest not found"):
        run_preflight(target)


def test_a_class_missing_beside_a_label_set_that_may_hold_it_says_so(tmp_path):
    target = mask_of({FOREST: 50, GRASSLAND: 50}, 10)
    oem = mask_of({FOREST: 50, 6: 50}, 10)
    report = run_preflight(hand_built(tmp_path, [target], [oem], label_sets={"6": [1, 2]}))
    assert report.warnings == [
        "class 'grassland' is absent (0 pixels) in the OpenEarthMap tiles but 50.00% of the "
        "target pixels (label sets that may be it: forest|grassland 50.00%)"
    ]
