"""Band statistics of a split's rasters: percentiles, mean/std of the stretch, caching and the CLI."""

import json

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from geoseg.bands import RasterInput
from geoseg.datasets import (
    BAND_STATISTICS_FILE,
    BandStatistics,
    band_statistics,
    band_statistics_cached,
)
from geoseg.datasets.stats.__main__ import main
from geoseg.datasets.stats.bands import STD_FLOOR, histogram_percentile
from geoseg.errors import ConfigError, DataError
from geoseg.models.input import InputNormalization

NODATA = 65535
RASTER = RasterInput(bands=(1, 2, 3, 4), count=4, dtype="uint16")


def write_tif(path, bands, nodata=None, valid=None):
    """bands: (C, H, W) -> a GeoTIFF of C bands; ``valid`` (H, W) bool as its mask band."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = bands.shape
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=str(bands.dtype),
        transform=Affine(1, 0, 0, 0, -1, height),  # georeferenced, so rasterio does not warn
    )
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(bands)
        if valid is not None:
            dst.write_mask(valid.astype(np.uint8) * 255)


def hand_images(seed=0):
    """Two 4-band uint16 images and their valid pixels.

    Image a (10 x 12): the first 100 pixels are valid, the last 20 nodata. Band 1 holds 0..99 once
    each (2nd percentile 1, 98th 97 by the inverted-CDF definition: 2 of 100 values are <= 1, 98
    are <= 97), band 2 the constant 500, bands 3 and 4 random values. Image b (8 x 8): all valid,
    band 1 at 50, band 2 at 500.
    """
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 60000, size=(4, 120), dtype=np.uint16)
    a[0, :100] = np.arange(100)
    a[1] = 500
    valid_a = np.arange(120) < 100
    b = rng.integers(1000, 3000, size=(4, 64), dtype=np.uint16)
    b[0], b[1] = 50, 500
    return {
        "a": (a.reshape(4, 10, 12), valid_a.reshape(10, 12)),
        "b": (b.reshape(4, 8, 8), np.ones((8, 8), bool)),
    }


def write_split(root, images, split="Train", nodata_fill=None):
    """Write ``images`` into ``<root>/<split>/images_png``: nodata pixels hold NODATA in every band
    (the nodata value), or with ``nodata_fill`` (an array of values) those values behind a mask."""
    for stem, (bands, valid) in images.items():
        bands = bands.copy()
        path = root / split / "images_png" / f"{stem}.tif"
        if nodata_fill is None:
            bands[:, ~valid] = NODATA
            write_tif(path, bands, nodata=NODATA)
        else:
            bands[:, ~valid] = nodata_fill[:, : (~valid).sum()]
            write_tif(path, bands, valid=valid)
    return root


def valid_pixels(images):
    """(N, C): every valid pixel of ``images``."""
    return np.concatenate([bands[:, valid].T for bands, valid in images.values()])


@pytest.fixture
def hand_root(tmp_path):
    return write_split(tmp_path / "data", hand_images())


def test_percentile_definition_on_hand_made_histograms():
    # Values 0, 0, 0, 2, 2, 2, 2, 2, 3, 3: the share <= 0 is 3/10, <= 2 is 8/10, <= 3 is 1.
    histogram = np.array([3, 0, 5, 2])
    assert histogram_percentile(histogram, 0) == 0
    assert histogram_percentile(histogram, 30) == 0  # 3/10 >= 30 %
    assert histogram_percentile(histogram, 31) == 2  # 3/10 < 31 % <= 8/10; 1 holds no value
    assert histogram_percentile(histogram, 80) == 2
    assert histogram_percentile(histogram, 80.5) == 3
    assert histogram_percentile(histogram, 100) == 3
    # 0 is the lowest value held, not the lowest bin.
    assert histogram_percentile(np.array([0, 0, 4, 1]), 0) == 2
    # Values 0..99 once each: the share <= v is (v + 1) / 100.
    once = np.ones(100, np.int64)
    assert histogram_percentile(once, 2) == 1
    assert histogram_percentile(once, 98) == 97
    assert histogram_percentile(once, 2.5) == 2
    # 0.1 % of 1000 values is exactly one value (not a hair more, as the float 0.1 is).
    assert histogram_percentile(np.ones(1000, np.int64), 0.1) == 0
    # The same as numpy's inverted-CDF percentile of the values themselves.
    values = np.random.default_rng(1).integers(0, 300, 997)
    counts = np.bincount(values, minlength=300)
    for p in (0, 0.1, 1, 2, 12.5, 50, 98, 99.9, 100):
        assert histogram_percentile(counts, p) == np.percentile(values, p, method="inverted_cdf")


def test_statistics_of_hand_made_rasters(hand_root):
    images = hand_images()
    stats = band_statistics(hand_root, "Train", raster=RASTER)
    assert (stats.bands, stats.count, stats.dtype) == ((1, 2, 3, 4), 4, "uint16")
    assert stats.percentiles == (2.0, 98.0)
    assert stats.num_images == 2
    assert stats.valid_pixels == (164,) * 4  # 100 of image a, 64 of image b
    # Band 1: 0..99 and 64 times 50; 164 * 2 % = 3.28 -> the 4th value, 3; 164 * 98 % = 160.72
    # -> the 161st value: 0..49 (50 values), 50 (65 values: up to the 115th), 51..99 -> 96.
    assert (stats.low[0], stats.high[0]) == (3, 96)
    # Band 2 is constant: high is low + 1, every pixel stretches to 0.
    assert (stats.low[1], stats.high[1]) == (500, 501)
    assert (stats.mean[1], stats.std[1]) == (0.0, 0.0)
    assert stats.normalization["std"][1] == STD_FLOOR
    # Independently: numpy's percentiles, stretch and moments of the valid pixels.
    pixels = valid_pixels(images).astype(np.float64)
    for band in range(4):
        x = pixels[:, band]
        low = np.percentile(x, 2, method="inverted_cdf")
        high = np.percentile(x, 98, method="inverted_cdf")
        if band != 1:
            assert (stats.low[band], stats.high[band]) == (low, high)
        high = max(high, low + 1)
        scaled = np.clip((x - low) / (high - low), 0, 1)
        assert stats.mean[band] == pytest.approx(scaled.mean(), rel=1e-12, abs=1e-15)
        assert stats.std[band] == pytest.approx(scaled.std(), rel=1e-12, abs=1e-15)
    assert stats.scaling == {
        "low": [float(v) for v in stats.low],
        "high": [float(v) for v in stats.high],
    }
    assert stats.raster_input() == RasterInput((1, 2, 3, 4), 4, "uint16", scaling=stats.scaling)


def test_the_network_input_of_the_statistics_has_mean_0_and_std_1(hand_root):
    stats = band_statistics(hand_root, "Train", raster=RASTER)
    normalize = InputNormalization(stats.normalization, stats.raster_input().scaling)
    pixels = torch.from_numpy(valid_pixels(hand_images()).astype(np.float32))
    out = normalize(pixels.T[None, :, :, None])[0, :, :, 0]
    assert torch.isfinite(out).all()
    for band in (0, 2, 3):
        assert out[band].mean().item() == pytest.approx(0.0, abs=1e-5)
        assert out[band].std(unbiased=False).item() == pytest.approx(1.0, rel=1e-5)
    assert (out[1] == 0).all()  # the constant band


def test_nodata_pixels_are_left_out(hand_root, tmp_path):
    images = hand_images()
    by_value = band_statistics(hand_root, "Train", raster=RASTER)
    # NODATA = 65535 in 20 pixels would be the 98th percentile of bands 3 and 4 if counted.
    assert max(by_value.high) < 60000
    # Huge values behind a mask band instead of a nodata value: the same statistics.
    masked = write_split(
        tmp_path / "masked", images, nodata_fill=np.full((4, 20), 65000, np.uint16)
    )
    assert band_statistics(masked, "Train", raster=RASTER) == by_value
    # Other values there: still the same.
    random = np.random.default_rng(5).integers(0, 65535, (4, 20), dtype=np.uint16)
    other = write_split(tmp_path / "other", images, nodata_fill=random)
    assert band_statistics(other, "Train", raster=RASTER) == by_value


def test_int16_and_uint8_rasters(tmp_path):
    # int16 values -50..49: 2nd percentile -49, 98th 47; bins are offset by 32768.
    bands = np.arange(-50, 50, dtype=np.int16).reshape(1, 10, 10)
    write_tif(tmp_path / "signed" / "Train" / "images_png" / "a.tif", bands)
    stats = band_statistics(
        tmp_path / "signed", raster=RasterInput((1,), dtype="int16"), percentiles=(2, 98)
    )
    assert (stats.low, stats.high) == ((-49,), (47,))
    x = bands.ravel().astype(np.float64)
    assert stats.mean[0] == pytest.approx(np.clip((x + 49) / 96, 0, 1).mean(), rel=1e-12)
    # uint8 PNG-like values, percentiles 0 and 100: the minimum and maximum.
    bands = np.array([[[7, 9], [200, 30]], [[1, 1], [1, 2]]], np.uint8)
    write_tif(tmp_path / "bytes" / "Train" / "images_png" / "a.tif", bands)
    stats = band_statistics(tmp_path / "bytes", raster=RasterInput((2, 1)), percentiles=(0, 100))
    assert (stats.low, stats.high) == ((1, 7), (2, 200))


def test_save_load_round_trip_and_bad_files(hand_root, tmp_path):
    path = tmp_path / "out" / "bands.json"
    stats = band_statistics(hand_root, "Train", raster=RASTER, output=path)
    assert BandStatistics.load(path) == stats
    data = json.loads(path.read_text())
    assert data == stats.to_dict()
    assert data["normalization"] == stats.normalization
    assert BandStatistics.from_dict(data) == stats
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temporary file

    with pytest.raises(DataError, match="missing.json: band statistics not found"):
        BandStatistics.load(tmp_path / "missing.json")
    garbled = tmp_path / "garbled.json"
    garbled.write_text('{"bands": [')
    with pytest.raises(DataError, match="garbled.json: not a readable JSON"):
        BandStatistics.load(garbled)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"bands": [1], "count": 1}))
    with pytest.raises(DataError, match=r"partial.json: band statistics lack \['dtype'"):
        BandStatistics.load(partial)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({**data, "high": data["low"]}))
    with pytest.raises(DataError, match="wrong.json: invalid band statistics: band 1: high"):
        BandStatistics.load(wrong)
    short = tmp_path / "short.json"
    short.write_text(json.dumps({**data, "mean": [0.5]}))
    with pytest.raises(DataError, match="short.json: .*mean has 1 values for 4 bands"):
        BandStatistics.load(short)


def test_cache_is_reused_for_the_same_parameters_only(tmp_path):
    images = hand_images()
    root = write_split(tmp_path, images)
    path = root / "Train" / BAND_STATISTICS_FILE
    first = band_statistics_cached(root, "Train", raster=RASTER)
    assert path.is_file() and BandStatistics.load(path) == first
    # Other pixel values, as many images: the saved statistics are reused, the images not read.
    changed = {stem: (bands // 2, valid) for stem, (bands, valid) in images.items()}
    write_split(root, changed)
    assert band_statistics_cached(root, "Train", raster=RASTER, percentiles=[2, 98]) == first
    # A contract's scaling does not matter: the statistics are of the raw values.
    scaled = RasterInput((1, 2, 3, 4), 4, "uint16", scaling={"divisor": 10000})
    assert band_statistics_cached(root, "Train", raster=scaled) == first
    # Other percentiles: computed again from the images as they are now, and saved.
    other = band_statistics_cached(root, "Train", raster=RASTER, percentiles=(5, 95))
    assert other == band_statistics(root, "Train", raster=RASTER, percentiles=(5, 95))
    assert other.percentiles == (5.0, 95.0) and BandStatistics.load(path) == other
    # Other bands: computed again.
    two = band_statistics_cached(root, "Train", raster=RasterInput((3, 1), 4, "uint16"))
    assert two.bands == (3, 1) and BandStatistics.load(path) == two
    # Another image in the folder: computed again.
    write_split(root, {"c": images["b"]})
    grown = band_statistics_cached(root, "Train", raster=RasterInput((3, 1), 4, "uint16"))
    assert grown.num_images == 3
    # An unreadable file is computed again (with a warning), not an error.
    path.write_text("{")
    assert band_statistics_cached(root, "Train", raster=RasterInput((3, 1), 4, "uint16")) == grown


def test_errors(tmp_path, hand_root):
    with pytest.raises(ConfigError, match="float32 rasters.*divisor"):
        band_statistics(hand_root, raster=RasterInput((1,), dtype="float32"))
    with pytest.raises(ConfigError, match="percentiles"):
        band_statistics(hand_root, raster=RASTER, percentiles=(98, 2))
    with pytest.raises(ConfigError, match="raster=RasterInput"):
        band_statistics(hand_root, raster=None)
    with pytest.raises(DataError, match=r"nowhere[/\\]Train[/\\]images_png: folder not found"):
        band_statistics(tmp_path / "nowhere", raster=RASTER)
    (tmp_path / "empty" / "Val" / "images_png").mkdir(parents=True)
    with pytest.raises(DataError, match=r"empty[/\\]Val[/\\]images_png: no images found"):
        band_statistics(tmp_path / "empty", "Val", raster=RASTER)
    void = {"a": (np.zeros((4, 2, 2), np.uint16), np.zeros((2, 2), bool))}
    write_split(tmp_path / "void", void)
    with pytest.raises(DataError, match=r"void[/\\]Train[/\\]images_png: no valid pixel"):
        band_statistics(tmp_path / "void", raster=RASTER)
    # A raster of another band count than the contract's names the file.
    with pytest.raises(DataError, match=r"a.tif: raster has 4 uint16 bands"):
        band_statistics(hand_root, raster=RasterInput((1, 2, 3), 3, "uint16"))


def test_cli_prints_the_table_and_writes_the_json(hand_root, capsys):
    main(["--root", str(hand_root), "--bands", "1,2,3,4", "--dtype", "uint16"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("|")]
    assert [cell.strip() for cell in rows[0].split("|")[1:-1]] == [
        "band",
        "low",
        "high",
        "mean",
        "std",
        "valid pixels",
    ]
    band_1 = [cell.strip() for cell in rows[2].split("|")[1:-1]]
    assert band_1[:3] == ["1", "3", "96"] and band_1[5] == "164"
    assert [cell.strip() for cell in rows[3].split("|")[1:-1]] == [
        "2",
        "500",
        "501",
        "0.0000",
        "0.0000",
        "164",
    ]
    assert "2 images of 4 uint16 bands" in out
    path = hand_root / "Train" / BAND_STATISTICS_FILE
    assert f"wrote {path}" in out
    assert f'stats = BandStatistics.load("{path}")' in out
    assert "raster=stats.raster_input(), normalization=stats.normalization" in out
    assert BandStatistics.load(path) == band_statistics(hand_root, raster=RASTER)
    # --output, --percentiles, --count.
    output = hand_root / "elsewhere.json"
    main(
        [
            "--root",
            str(hand_root),
            "--bands",
            "3",
            "--count",
            "4",
            "--dtype",
            "uint16",
            "--percentiles",
            "5,95",
            "--output",
            str(output),
        ]
    )
    stats = BandStatistics.load(output)
    assert (stats.bands, stats.count, stats.percentiles) == ((3,), 4, (5.0, 95.0))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--bands", "1,x"], "--bands '1,x'"),
        (["--bands", "1,1"], "distinct"),
        (["--bands", "1,2", "--percentiles", "98,2"], "--percentiles '98,2'"),
        (["--bands", "1,2", "--percentiles", "two"], "--percentiles 'two'"),
        (["--dtype", "uint16"], "--dtype apply to band statistics: add --bands"),
        (["--bands", "1", "--classes", "a,b"], "--classes apply to class statistics"),
    ],
)
def test_cli_bad_options(hand_root, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        main(["--root", str(hand_root), *args])
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
