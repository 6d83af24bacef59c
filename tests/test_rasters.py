"""GeoTIFF (and other GDAL raster) reading: band layouts, nodata as ignore, errors naming the file."""

import logging
import warnings

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.enums import ColorInterp

from geoseg.datasets import IGNORE_INDEX, TargetDataset
from geoseg.datasets.io import read_image, read_image_and_valid, read_mask
from geoseg.errors import DataError

from conftest import REALDATA

H, W = 6, 7
RGB = [ColorInterp.red, ColorInterp.green, ColorInterp.blue]


def write_raster(path, bands, *, colorinterp=None, **profile):
    """Write ``bands`` (count, H, W) as a GeoTIFF; ``profile`` adds creation options."""
    bands = np.asarray(bands)
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=bands.shape[2],
        height=bands.shape[1],
        count=bands.shape[0],
        dtype=bands.dtype,
        transform=rasterio.Affine(0.5, 0, 500000, 0, -0.5, 4000000),
        **profile,
    ) as dataset:
        dataset.write(bands)
        if colorinterp is not None:
            dataset.colorinterp = colorinterp
    return path


def distinct_bands(count=3, dtype=np.uint8):
    """Bands that differ from each other everywhere: a constant, a gradient, a reversed gradient."""
    grid = np.arange(H * W).reshape(H, W)
    bands = [np.full((H, W), 200), grid, 100 - grid, grid % 5 + 150, grid + 60]
    return np.stack(bands[:count]).astype(dtype)


def test_band_interleaved_three_bands_are_read_in_order(tmp_path):
    bands = distinct_bands()
    path = write_raster(tmp_path / "planar.tif", bands, photometric="MINISBLACK", interleave="band")
    with rasterio.open(path) as dataset:  # the layout that OpenCV read as band 1 three times
        assert dataset.colorinterp[0] == ColorInterp.gray
    image, valid = read_image_and_valid(path)
    assert image.dtype == np.uint8 and image.shape == (H, W, 3) and valid is None
    assert np.array_equal(image, bands.transpose(1, 2, 0))
    assert np.array_equal(read_image(path), image)


def test_pixel_interleaved_rgb_equals_the_same_pixels_as_png(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (H, W, 3), dtype=np.uint8)
    tif = write_raster(tmp_path / "rgb.tif", rgb.transpose(2, 0, 1), photometric="RGB")
    assert cv2.imwrite(str(tmp_path / "rgb.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert np.array_equal(read_image(tif), read_image(tmp_path / "rgb.png"))
    assert np.array_equal(read_image(tif), rgb)


def test_grey_raster_is_repeated_to_three_bands(tmp_path):
    grey = distinct_bands(1)
    image, valid = read_image_and_valid(write_raster(tmp_path / "grey.tif", grey))
    assert valid is None and np.array_equal(image, np.repeat(grey[0][:, :, None], 3, axis=2))


def test_real_openearthmap_tiles_read_as_opencv_decodes_them(caplog):
    samples = REALDATA / "openearthmap_samples"
    images = sorted((samples / "images").glob("*.tif"))
    if not images:
        pytest.skip(f"real sample data not found at {samples}")
    for image_path in images:
        with warnings.catch_warnings(), caplog.at_level(logging.DEBUG, logger="rasterio._env"):
            warnings.simplefilter("error")  # no GDAL or rasterio warning for a normal file
            image, valid = read_image_and_valid(image_path)
            label = read_mask(samples / "labels" / image_path.name)
        assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
        decoded = cv2.cvtColor(cv2.imread(str(image_path), cv2.IMREAD_UNCHANGED), cv2.COLOR_BGR2RGB)
        assert valid is None and np.array_equal(image, decoded)
        expected = cv2.imread(str(samples / "labels" / image_path.name), cv2.IMREAD_UNCHANGED)
        assert label.dtype == np.uint8 and np.array_equal(label, expected)


def test_tiff_without_georeferencing_reads_without_warnings(tmp_path, caplog):
    bgr = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    assert cv2.imwrite(str(tmp_path / "plain.tif"), bgr)  # no geotransform, no GeoTIFF tags
    assert cv2.imwrite(str(tmp_path / "ids.tif"), bgr[:, :, 0])
    with warnings.catch_warnings(), caplog.at_level(logging.DEBUG, logger="rasterio._env"):
        warnings.simplefilter("error")
        image = read_image(tmp_path / "plain.tif")
        ids = read_mask(tmp_path / "ids.tif")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert np.array_equal(image, bgr[:, :, ::-1]) and np.array_equal(ids, bgr[:, :, 0])


def write_tile(root, stem, image_bands, mask, **profile):
    for folder in ("images_png", "masks_png"):
        (root / "Train" / folder).mkdir(parents=True, exist_ok=True)
    write_raster(root / "Train" / "images_png" / f"{stem}.tif", image_bands, **profile)
    assert cv2.imwrite(str(root / "Train" / "masks_png" / f"{stem}.png"), mask)


def test_nodata_value_marks_pixels_invalid_and_ignored(tmp_path):
    bands = distinct_bands() + 1  # no zeros anywhere ...
    bands[:, 0, :3] = 0  # ... except three pixels that are 0 in every band: nodata
    bands[0, 2, 2] = 0  # 0 in one band only: data
    path = write_raster(tmp_path / "nodata.tif", bands, nodata=0)
    image, valid = read_image_and_valid(path)
    expected = np.ones((H, W), bool)
    expected[0, :3] = False
    assert np.array_equal(valid, expected)
    assert np.array_equal(image, bands.transpose(1, 2, 0))
    assert np.array_equal(read_image(path), image)

    mask = np.full((H, W), 3, np.uint8)
    write_tile(tmp_path / "data", "tile", bands, mask, nodata=0)
    dataset = TargetDataset(tmp_path / "data", "Train")
    _, loaded = dataset.load_pair("tile")
    assert np.array_equal(loaded, np.where(expected, 3, IGNORE_INDEX))
    item = dataset[0]["gt_semantic_seg"]
    assert (item[0, :3] == IGNORE_INDEX).all() and (item[expected] == 3).all()


def test_alpha_band_is_the_validity_mask(tmp_path):
    alpha = np.full((H, W), 255, np.uint8)
    alpha[1:3, 4:] = 0
    alpha[5, 5] = 128  # partly transparent still holds data
    rgb = distinct_bands()
    path = write_raster(
        tmp_path / "rgba.tif",
        np.concatenate([rgb, alpha[None]]),
        photometric="RGB",
        alpha="YES",
    )
    image, valid = read_image_and_valid(path)
    assert np.array_equal(image, rgb.transpose(1, 2, 0))
    assert np.array_equal(valid, alpha != 0)


def test_raster_without_nodata_mask_or_alpha_has_no_validity_mask(tmp_path):
    path = write_raster(tmp_path / "plain.tif", distinct_bands(), photometric="RGB")
    assert read_image_and_valid(path)[1] is None
    assert cv2.imwrite(str(tmp_path / "a.png"), np.zeros((H, W, 4), np.uint8))
    image, valid = read_image_and_valid(tmp_path / "a.png")  # PNG alpha: dropped, as before
    assert valid is None and image.shape == (H, W, 3)


# GDAL writes 4 bytes bands as RGB + alpha by default; RGB + NIR files say otherwise.
NOT_RGB = {
    "rgb_nir_gray": (4, dict(colorinterp=[*RGB, ColorInterp.gray])),
    "rgb_nir_unspecified": (4, dict(photometric="RGB", alpha="UNSPECIFIED")),  # as OpenCV writes
    "rgb_nir_minisblack": (4, dict(photometric="MINISBLACK")),
    "two_bands": (2, {}),
    "five_bands": (5, {}),
}


@pytest.mark.parametrize("case", list(NOT_RGB))
def test_band_layouts_other_than_rgb_are_errors(tmp_path, case):
    count, profile = NOT_RGB[case]
    path = write_raster(tmp_path / f"{case}.tif", distinct_bands(count), **profile)
    with rasterio.open(path) as dataset:
        assert ColorInterp.alpha not in dataset.colorinterp
        names = ", ".join(interp.name for interp in dataset.colorinterp)
    message = rf"{case}\.tif: raster has {count} bands \({names}\)"
    with pytest.raises(DataError, match=message) as error:
        read_image_and_valid(path)
    assert "3-band RGB" in str(error.value) and "RasterInput" in str(error.value)
    with pytest.raises(DataError, match=message):
        read_image(path)


def test_16_bit_and_corrupt_rasters_are_errors_naming_the_file(tmp_path):
    deep = write_raster(tmp_path / "deep.tif", distinct_bands(dtype=np.uint16) * 200)
    with pytest.raises(DataError, match=r"deep\.tif: image dtype is uint16; expected 8-bit"):
        read_image(deep)
    (tmp_path / "garbage.tif").write_bytes(b"II*\x00garbage")
    with pytest.raises(DataError, match=r"garbage\.tif: unreadable or corrupt"):
        read_image_and_valid(tmp_path / "garbage.tif")
    with pytest.raises(DataError, match=r"garbage\.tif: unreadable or corrupt"):
        read_mask(tmp_path / "garbage.tif")
    (tmp_path / "empty.tif").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.tif: empty file"):
        read_image(tmp_path / "empty.tif")
    with pytest.raises(DataError, match=r"missing\.tif: file not found"):
        read_image(tmp_path / "missing.tif")


def test_geotiff_masks_need_one_uint8_band(tmp_path):
    ids = (distinct_bands(1) % 6).astype(np.uint8)
    assert np.array_equal(read_mask(write_raster(tmp_path / "ids.tif", ids)), ids[0])
    with pytest.raises(DataError, match=r"rgb\.tif: mask has 3 bands.*colour-coded"):
        read_mask(write_raster(tmp_path / "rgb.tif", distinct_bands(), photometric="RGB"))
    with pytest.raises(DataError, match=r"deep\.tif: mask dtype is uint16; expected uint8"):
        read_mask(write_raster(tmp_path / "deep.tif", ids.astype(np.uint16)))


def test_mask_band_and_colour_table_are_read(tmp_path):
    rgb = distinct_bands()
    path = tmp_path / "masked.tif"
    write_raster(path, rgb, photometric="RGB")
    data = np.full((H, W), 255, np.uint8)
    data[4:, :2] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as dataset:
        dataset.write_mask(data)
    image, valid = read_image_and_valid(path)
    assert np.array_equal(image, rgb.transpose(1, 2, 0)) and np.array_equal(valid, data != 0)

    indices = (distinct_bands(1) % 3).astype(np.uint8)
    colours = {0: (10, 20, 30, 255), 1: (40, 50, 60, 255), 2: (70, 80, 90, 255)}
    path = write_raster(tmp_path / "palette.tif", indices, photometric="PALETTE")
    with rasterio.open(path, "r+") as dataset:
        dataset.write_colormap(1, colours)
    image, valid = read_image_and_valid(path)
    lut = np.array([colours[i][:3] for i in range(3)], np.uint8)
    assert valid is None and np.array_equal(image, lut[indices[0]])
    assert np.array_equal(read_mask(path), indices[0])  # a mask's colour table: ids as stored
