"""Multispectral and 16-bit rasters: the input contract (bands, dtype, scaling) from the config to
the checkpoint to inference, pretrained RGB weights extended to more bands, and named errors."""

import subprocess
import sys

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import Affine

from geoseg.bands import RasterInput, check_same_input, network_raster_input, picture
from geoseg.config import load_config
from geoseg.datasets import CLASSES, IGNORE_INDEX, RareClassCrop, TargetDataset, train_transform
from geoseg.datasets.io import read_image_and_valid
from geoseg.errors import BandMismatchError, CheckpointError, ConfigError, DataError
from geoseg.models import UNetFormer, load_model_and_spec, save_model
from geoseg.models.input import InputNormalization
from geoseg.training import train
from geoseg.training.kd import load_teacher

from conftest import REPO_ROOT, tiny_ftunetformer

SCRIPT = str(REPO_ROOT / "ensemble_inference.py")
TRANSFORM = Affine(10.0, 0.0, 600000.0, 0.0, -10.0, 5000000.0)
NODATA = 0
FOUR_BANDS = RasterInput(bands=(1, 2, 3, 4), dtype="uint16", scaling={"divisor": 10000})
FOUR_BAND_STATS = dict(mean=[0.1, 0.1, 0.1, 0.3], std=[0.05, 0.05, 0.05, 0.1])


def write_raster(path, bands: np.ndarray, nodata=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    count, height, width = bands.shape
    profile = dict(driver="GTiff", width=width, height=height, count=count, dtype=bands.dtype)
    with rasterio.open(
        path, "w", **profile, crs="EPSG:32632", transform=TRANSFORM, nodata=nodata
    ) as dataset:
        dataset.write(bands)
    return path


def reflectance(height, width, seed, count=4):
    """uint16 bands like a Sentinel-2 or aerial RGB+NIR product: values 1..4000, 0 = nodata."""
    return np.random.default_rng(seed).integers(1, 4000, (count, height, width), dtype=np.uint16)


def write_four_band_dataset(root, tiles=(("Train", 8), ("Val", 4)), size=32):
    """Target layout with 4-band uint16 GeoTIFF tiles whose left 4 columns are nodata, and masks
    labelled everywhere (the nodata must become ignore by itself)."""
    rng = np.random.default_rng(0)
    for split, count in tiles:
        for index in range(count):
            bands = reflectance(size, size, seed=index + 100 * len(split))
            bands[:, :, :4] = NODATA
            mask = rng.integers(0, len(CLASSES), (1, size, size), dtype=np.uint8)
            # a class the bands can tell: high near-infrared is class 1
            mask[0][bands[3] > 3000] = 1
            write_raster(root / split / "images_png" / f"t{index}.tif", bands, nodata=NODATA)
            write_raster(root / split / "masks_png" / f"t{index}.tif", mask)
    return root


# --- the contract ----------------------------------------------------------------------------


def test_one_band_check_names_both_sides_and_is_a_config_and_a_checkpoint_error():
    check_same_input(FOUR_BANDS, RasterInput(bands=(1, 2, 3, 4), dtype="uint16"), "a", "b")
    with pytest.raises(BandMismatchError) as error:
        check_same_input(None, FOUR_BANDS, "x.ckpt: the teacher", "the student", "; fix it")
    assert str(error.value) == (
        f"x.ckpt: the teacher reads 8-bit RGB images, the student {FOUR_BANDS.describe()}; fix it"
    )
    assert isinstance(error.value, ConfigError) and isinstance(error.value, CheckpointError)


def test_raster_input_checks_its_fields_and_round_trips():
    assert FOUR_BANDS.count == 4 and FOUR_BANDS.in_chans == 4
    assert RasterInput.of(FOUR_BANDS.to_dict()) == FOUR_BANDS
    assert (
        RasterInput(bands=(5, 3, 2), count=8).describe()
        == "8-band uint8 rasters (bands 5, 3, 2 read)"
    )
    for bad in (
        dict(bands=()),
        dict(bands=(0, 1)),
        dict(bands=(1, 1)),
        dict(bands=(1, 2), count=1),
        dict(bands=(1,), dtype="complex64"),
        dict(bands=(1, 2), scaling={"low": [0], "high": [1]}),
        dict(bands=(1,), scaling={"low": [5], "high": [5]}),
        dict(bands=(1,), scaling={"divisor": 0}),
    ):
        with pytest.raises(ConfigError):
            RasterInput(**bad)
    assert network_raster_input(None, None) is None
    assert network_raster_input(3, None) is None
    assert network_raster_input(4, None) == RasterInput(bands=(1, 2, 3, 4))
    with pytest.raises(ConfigError, match="in_chans=3 differs"):
        network_raster_input(3, FOUR_BANDS)


def test_scaling_comes_before_the_normalisation_inside_the_network():
    x = torch.tensor([[[[0.0, 50.0, 20.0]], [[100.0, 400.0, 150.0]]]])  # (1, 2, 1, 3)
    stretch = {"low": [10.0, 100.0], "high": [30.0, 300.0]}
    # clip((x - low) / (high - low), 0, 1), by hand
    expected = torch.tensor([[[[0.0, 1.0, 0.5]], [[0.0, 1.0, 0.25]]]])
    assert torch.allclose(InputNormalization(None, stretch)(x), expected)
    assert torch.allclose(InputNormalization(None, {"divisor": 50.0})(x), x / 50)
    normalise = InputNormalization({"mean": [0.5, 0.25], "std": [0.5, 0.125]}, stretch)
    assert torch.allclose(normalise(x), torch.tensor([[[[-1.0, 1.0, 0.0]], [[-2.0, 6.0, 0.0]]]]))


def test_a_four_band_network_records_its_contract_and_rebuilds_from_the_checkpoint(tmp_path):
    net = tiny_ftunetformer(raster=FOUR_BANDS, normalization=FOUR_BAND_STATS).eval()
    assert net.in_chans == 4
    assert net.backbone.patch_embed.proj.weight.shape[1] == 4
    save_model(net, tmp_path / "m.ckpt", classes=CLASSES, ignore_index=IGNORE_INDEX)
    loaded, spec = load_model_and_spec(tmp_path / "m.ckpt")
    assert spec.raster == FOUR_BANDS
    x = torch.rand(1, 4, 64, 64) * 4000
    with torch.no_grad():
        assert torch.equal(loaded(x), net(x))
    with pytest.raises(ConfigError, match="normalization has 3 values"):
        tiny_ftunetformer(raster=FOUR_BANDS)  # ImageNet's RGB statistics by default
    sixteen_bit_rgb = RasterInput(bands=(1, 2, 3), dtype="uint16", scaling={"divisor": 10000})
    with pytest.raises(ConfigError, match="ImageNet's, on the 0-255 scale"):
        tiny_ftunetformer(raster=sixteen_bit_rgb)
    with pytest.raises(ValueError, match="input has 3 bands; the network reads 4"):
        net(torch.zeros(1, 3, 32, 32))


# --- RGB weights extended to more bands ------------------------------------------------------


def expected_extension(rgb: torch.Tensor, bands: int) -> torch.Tensor:
    """timm's adapt_input_conv, written out: band b takes the RGB filter b mod 3, x 3 / bands."""
    return torch.stack([rgb[:, b % 3] for b in range(bands)], 1) * (3 / bands)


def test_swin_rgb_weights_extend_to_four_bands(tmp_path):
    rgb_net = tiny_ftunetformer()
    path = tmp_path / "swin_rgb.pth"
    torch.save(rgb_net.backbone.state_dict(), path)
    net = tiny_ftunetformer(in_chans=4, normalization=None, pretrained=str(path))
    rgb = rgb_net.backbone.patch_embed.proj.weight
    assert torch.allclose(net.backbone.patch_embed.proj.weight, expected_extension(rgb, 4))
    # everything past the first conv is the file's, as it is
    block = "layers.0.blocks.0.attn.qkv.weight"
    assert torch.equal(net.backbone.state_dict()[block], rgb_net.backbone.state_dict()[block])


def test_timm_backbone_rgb_weights_extend_to_four_bands(tmp_path):
    import timm

    torch.manual_seed(0)
    resnet = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(resnet.state_dict(), path)
    net = UNetFormer(
        num_classes=len(CLASSES),
        in_chans=4,
        normalization=None,
        pretrained=str(path),
        decode_channels=16,
        num_heads=4,
    )
    assert torch.allclose(
        net.backbone.conv1.weight, expected_extension(resnet.conv1.weight, 4), atol=1e-7
    )
    assert torch.equal(net.backbone.layer1[0].conv1.weight, resnet.layer1[0].conv1.weight)


# --- reading ----------------------------------------------------------------------------------


def test_four_band_uint16_raster_reads_raw_with_its_nodata(tmp_path):
    bands = reflectance(6, 5, seed=1)
    bands[:, 0, 0] = NODATA
    path = write_raster(tmp_path / "s.tif", bands, nodata=NODATA)
    image, valid = read_image_and_valid(path, FOUR_BANDS)
    assert image.dtype == np.uint16 and np.array_equal(image, bands.transpose(1, 2, 0))
    assert not valid[0, 0] and valid.sum() == 6 * 5 - 1
    selected, _ = read_image_and_valid(path, RasterInput(bands=(4, 1), count=4, dtype="uint16"))
    assert np.array_equal(selected, bands[[3, 0]].transpose(1, 2, 0))


def test_nodata_and_non_finite_values_enter_the_network_as_zero(tmp_path):
    bands = np.full((2, 3, 3), 0.25, np.float32)
    bands[:, 0, 0] = -9999.0  # the nodata value
    bands[1, 2, 2] = np.nan
    path = write_raster(tmp_path / "f.tif", bands, nodata=-9999.0)
    image, valid = read_image_and_valid(path, RasterInput(bands=(1, 2), dtype="float32"))
    assert not valid[0, 0] and valid[2, 2]
    expected = np.full((3, 3, 2), 0.25, np.float32)
    expected[0, 0] = 0
    expected[2, 2] = 0  # a NaN in one band zeroes that pixel's bands
    assert np.array_equal(image, expected)


@pytest.mark.parametrize(
    ("bands", "message"),
    [
        (reflectance(4, 4, seed=2, count=5), "raster has 5 uint16 bands"),
        (np.ones((4, 4, 4), np.uint8), "raster has 4 uint8 bands"),
    ],
)
def test_a_raster_that_does_not_fit_the_contract_is_a_named_error(tmp_path, bands, message):
    path = write_raster(tmp_path / "odd.tif", bands)
    with pytest.raises(DataError, match=message) as error:
        read_image_and_valid(path, FOUR_BANDS)
    assert str(path) in str(error.value)
    assert "the model reads 4-band uint16 rasters (bands 1, 2, 3, 4 read)" in str(error.value)


def test_an_rgb_model_refuses_a_four_band_raster_with_what_to_do(tmp_path):
    path = write_raster(tmp_path / "rgbn.tif", reflectance(4, 4, seed=3))
    with pytest.raises(DataError, match="4 bands .*RasterInput"):
        read_image_and_valid(path)


def test_bands_are_augmented_geometrically_without_colour_jitter(tmp_path):
    root = write_four_band_dataset(tmp_path / "data", tiles=(("Train", 2),))
    plain = TargetDataset(root, "Train", raster=FOUR_BANDS)
    image, mask = plain.load_pair("t0")
    assert image.dtype == np.float32 and image.shape == (32, 32, 4)
    assert (mask[:, :4] == IGNORE_INDEX).all() and (mask[:, 4:] != IGNORE_INDEX).all()
    augmented = TargetDataset(
        root, "Train", raster=FOUR_BANDS, transform=train_transform(32, scale_range=(1, 1))
    )
    torch.manual_seed(0)
    for _ in range(6):
        item = augmented[0]
        # scale 1 and a crop of the whole tile: flips and rotations only, so every value is kept
        assert torch.equal(
            item["img"].flatten().sort().values, torch.from_numpy(image).flatten().sort().values
        )


def test_rare_class_crops_never_centre_on_image_nodata(tmp_path):
    root = write_four_band_dataset(tmp_path / "data", tiles=(("Train", 3),))
    dataset = TargetDataset(
        root,
        "Train",
        raster=FOUR_BANDS,
        transform=train_transform(32),
        rare_class_crop=RareClassCrop(p=1.0, samples_per_class=10_000),
    )
    for per_class in dataset._class_index.positions:
        columns = np.concatenate(list(per_class.values())) % 32
        assert columns.min() >= 4  # the nodata columns 0..3 are labelled in the mask files
        assert len(columns) == 32 * 28


def test_pictures_of_sixteen_bit_bands_are_stretched_per_band():
    image = torch.zeros(4, 1, 100)
    image[0, 0] = (
        torch.arange(100) * 10.0 + 1000
    )  # 1000..1990: the 2% / 98% quantiles 1019.8 / 1970.2
    rgb = picture(image, FOUR_BANDS)
    assert rgb.shape == (1, 100, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0, 0] == 0 and rgb[0, 99, 0] == 255
    assert rgb[0, 50, 0] == round((1500 - 1019.8) / (1970.2 - 1019.8) * 255)
    assert (rgb[..., 1] == 0).all()  # a constant band is black, not a division by zero


# --- mismatches stop early with a name --------------------------------------------------------


def test_a_dataset_of_other_bands_than_the_network_is_a_config_error(tmp_path, synthetic_root):
    config = tmp_path / "c.py"
    config.write_text(
        CONFIG.format(data_root=synthetic_root, weights_path=tmp_path / "w", dataset_raster="None")
    )
    with pytest.raises(
        ConfigError,
        match="a dataset of train_loader reads 8-bit RGB images, the network 4-band uint16",
    ):
        train(load_config(config))


def test_teacher_and_ensemble_members_must_read_the_same_bands(tmp_path):
    four = tiny_ftunetformer(raster=FOUR_BANDS, normalization=FOUR_BAND_STATS)
    rgb = tiny_ftunetformer()
    save_model(four, tmp_path / "four.ckpt", classes=CLASSES, ignore_index=IGNORE_INDEX)
    save_model(rgb, tmp_path / "rgb.ckpt", classes=CLASSES, ignore_index=IGNORE_INDEX)
    with pytest.raises(CheckpointError, match="teacher reads 8-bit RGB images, the student 4-band"):
        load_teacher(tmp_path / "rgb.ckpt", CLASSES, raster=FOUR_BANDS)
    result = run_cli(
        "--input-dir",
        tmp_path,
        "--output-dir",
        tmp_path / "out",
        "--checkpoints",
        tmp_path / "four.ckpt",
        tmp_path / "rgb.ckpt",
    )
    assert result.returncode != 0
    assert "an ensemble reads one set of bands" in result.stderr
    assert "Traceback" not in result.stderr


# --- end to end: a 4-band uint16 dataset with nodata trains and maps a scene -------------------

CONFIG = """
import torch
from torch.utils.data import DataLoader

from geoseg.bands import RasterInput
from geoseg.datasets import CLASSES, IGNORE_INDEX, RareClassCrop, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.models import FTUNetFormer

RASTER = RasterInput(bands=(1, 2, 3, 4), dtype="uint16", scaling={{"divisor": 10000}})
classes = CLASSES
ignore_index = IGNORE_INDEX
train_loader = DataLoader(
    TargetDataset("{data_root}", "Train", transform=train_transform(32), raster={dataset_raster}),
    batch_size=4, shuffle=True, drop_last=True,
)
val_loader = DataLoader(TargetDataset("{data_root}", "Val", raster={dataset_raster}), batch_size=4)
net = FTUNetFormer(
    num_classes=len(classes),
    backbone="swin_tiny_patch4_window7_224",
    backbone_kwargs=dict(embed_dim=16, depths=(1, 1, 1, 1), num_heads=(1, 1, 1, 1)),
    decode_channels=16,
    window_size=4,
    raster=RASTER,
    normalization=dict(mean=[0.2] * 4, std=[0.1] * 4),
)
loss = CEDiceLoss(ignore_index=ignore_index)
optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
lr_scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=1)
max_epoch = 1
accelerator = "cpu"
devices = 1
weights_path = "{weights_path}"
weights_name = "best"
log_name = "four_band"
monitor = "val_mIoU"
monitor_mode = "max"
"""


def run_cli(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, "--num-workers", "0", "--scales", "1.0", "--flips", "none"]
        + ["--precision", "fp32"]  # float32 references, on every CPU
        + [str(a) for a in args],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # a training run and a scene mapped by the script
def test_four_band_uint16_tiles_with_nodata_train_and_map_a_scene(tmp_path, monkeypatch):
    root = write_four_band_dataset(tmp_path / "data")
    config = tmp_path / "four_band.py"
    config.write_text(
        CONFIG.format(data_root=root, weights_path=tmp_path / "weights", dataset_raster="RASTER")
    )
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(0)
    trainer, module = train(load_config(config))
    assert trainer.current_epoch == 1
    # the validation tiles' nodata columns are ignored: every labelled pixel counted is data
    confusion = module.last_val_confusion["val"]
    assert int(confusion.sum()) == 4 * 32 * (32 - 4)

    checkpoint = tmp_path / "weights" / "last.ckpt"
    _, spec = load_model_and_spec(checkpoint)
    assert spec.raster == FOUR_BANDS
    scene = reflectance(90, 70, seed=7)
    scene[:, 60:, :] = NODATA  # a nodata border at the bottom
    write_raster(tmp_path / "scenes" / "s.tif", scene, nodata=NODATA)
    result = run_cli(
        "--input-dir", tmp_path / "scenes", "--output-dir", tmp_path / "maps",
        "--checkpoints", checkpoint, "--tile-size", 64, "--overlap", 16,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    with rasterio.open(tmp_path / "maps" / "s.tif") as output:
        classes = output.read(1)
        assert output.nodata == IGNORE_INDEX
        assert output.transform == TRANSFORM
    assert (classes[60:] == IGNORE_INDEX).all()
    assert (classes[:60] < len(CLASSES)).all()

    # a 5-band raster given to this 4-band model: one line naming the file and both layouts
    write_raster(tmp_path / "five" / "f.tif", reflectance(20, 20, seed=8, count=5))
    result = run_cli(
        "--input-dir",
        tmp_path / "five",
        "--output-dir",
        tmp_path / "five_out",
        "--checkpoints",
        checkpoint,
    )
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert "f.tif: raster has 5 uint16 bands" in result.stderr
    assert "the model reads 4-band uint16 rasters" in result.stderr
