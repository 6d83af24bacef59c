"""Portable models: ONNX and TorchScript exports compute the PyTorch network's logits from raw
bands, carry the checkpoint's input contract, classes and palette, and leave nothing behind when
they fail."""

import json
import os
import re
import shutil
import sys

import numpy as np
import onnxruntime
import pytest
import torch

from geoseg.bands import RasterInput
from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.errors import ConfigError, DataError
from geoseg.export import export_model, read_export_metadata
from geoseg.models import UNetFormer, load_model_and_spec, save_model

from conftest import REPO_ROOT, file_digest, run_python, tiny_ftunetformer

SCRIPT = str(REPO_ROOT / "export_model.py")
TILE = 64
TOLERANCE = 1e-4  # max abs difference of the logits
# name -> (the network, the top of its native input scale)
NETWORKS = {
    "ftunetformer_rgb": (tiny_ftunetformer, 255),
    "ftunetformer_4band": (
        lambda: tiny_ftunetformer(
            raster=RasterInput(bands=(1, 2, 3, 4), dtype="uint16", scaling={"divisor": 10000}),
            normalization=dict(mean=[0.1] * 4, std=[0.2] * 4),
        ),
        4000,
    ),
    "unetformer_rgb": (
        lambda: UNetFormer(num_classes=len(CLASSES), decode_channels=16, num_heads=4),
        255,
    ),
}


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """name -> the path of that tiny network's checkpoint, saved on first use."""
    folder = tmp_path_factory.mktemp("export")
    saved = {}

    def get(name: str):
        if name not in saved:
            torch.manual_seed(0)
            saved[name] = folder / f"{name}.ckpt"
            net = NETWORKS[name][0]()
            # Untrained, the logits are a few hundredths, where 1e-4 would be a loose bound;
            # scaling the class layer alone makes them units without magnifying the rounding
            # inside the network (sharpened norm layers would: fp32 and fp64 then differ by 1e-3).
            with torch.no_grad():
                net.decoder.head[-1].weight.mul_(100)
            save_model(net, saved[name], classes=CLASSES, ignore_index=IGNORE_INDEX)
        return saved[name]

    return get


def exported_runner(path):
    """image (B, C, H, W) -> logits as numpy, by onnxruntime or torch.jit as the file is."""
    if path.suffix == ".onnx":
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        return lambda image: session.run(None, {"image": image.numpy()})[0]
    module = torch.jit.load(str(path))
    return lambda image: module(image).detach().numpy()


def assert_matches_checkpoint(exported, checkpoint, top: float, batch_size=None) -> None:
    """The exported file computes the checkpoint's logits from raw bands and carries its spec.

    A dynamic batch is run at 1 and 2 (the export traced 2 and checked 3 itself)."""
    net, spec = load_model_and_spec(checkpoint)
    run = exported_runner(exported)
    generator = torch.Generator().manual_seed(1)
    for batch in (1, 2) if batch_size is None else (batch_size,):
        image = torch.rand(batch, net.in_chans, TILE, TILE, generator=generator) * top
        with torch.no_grad():
            expected = net(image).numpy()
        logits = run(image)
        assert logits.dtype == np.float32
        assert logits.shape == expected.shape == (batch, spec.num_classes, TILE, TILE)
        difference = float(np.abs(logits - expected).max())
        assert difference <= TOLERANCE, f"{exported.name}: max abs difference {difference}"
    metadata = read_export_metadata(exported)
    assert metadata["format_version"] == 1
    assert metadata["model_class"] == spec.model_class
    assert metadata["classes"] == list(spec.classes)
    assert metadata["palette"] == [list(colour) for colour in spec.palette]
    assert metadata["ignore_index"] == spec.ignore_index
    assert metadata["input"]["raster"] == (None if spec.raster is None else spec.raster.to_dict())
    assert metadata["input"]["normalization"] == spec.normalization
    assert metadata["input"]["in_chans"] == net.in_chans
    assert metadata["input"]["tile_size"] == TILE
    assert metadata["input"]["batch_size"] == batch_size
    assert metadata["output"]["num_classes"] == spec.num_classes


# The RGB FT-UNetFormer's ONNX export goes through the script (test_script_exports_onnx). A
# dynamic batch doubles the seconds an ONNX export takes, so only the Swin network whose batch
# torch.export would freeze if traced at 1 has one here; the other ONNX exports fix it.
@pytest.mark.parametrize(
    "name, format, batch_size",
    [
        ("ftunetformer_rgb", "torchscript", None),
        # ONNX exports take 10-40 s each (torch.export + onnxscript): the full suite runs them
        pytest.param("ftunetformer_4band", "onnx", None, marks=pytest.mark.slow),
        ("ftunetformer_4band", "torchscript", None),
        pytest.param("unetformer_rgb", "onnx", 2, marks=pytest.mark.slow),
        ("unetformer_rgb", "torchscript", None),
    ],
)
def test_export_computes_the_networks_logits_and_carries_its_spec(
    checkpoint, tmp_path, name, format, batch_size
):
    output = tmp_path / f"{name}.{format}"
    result = export_model(
        checkpoint(name), output, format=format, tile_size=TILE, batch_size=batch_size
    )
    assert result.path == output and output.is_file()
    assert result.max_abs_difference <= TOLERANCE
    assert_matches_checkpoint(output, checkpoint(name), NETWORKS[name][1], batch_size)
    assert result.metadata == read_export_metadata(output)
    assert result.metadata["format"] == format
    if format == "onnx":  # the batch dynamic or fixed, bands and tile fixed
        session = onnxruntime.InferenceSession(str(output), providers=["CPUExecutionProvider"])
        (image,), (logits,) = session.get_inputs(), session.get_outputs()
        batch = batch_size or "batch"
        in_chans = result.metadata["input"]["in_chans"]
        assert image.name == "image" and image.shape == [batch, in_chans, TILE, TILE]
        assert logits.name == "logits" and logits.shape == [batch, len(CLASSES), TILE, TILE]


@pytest.mark.slow  # a fresh interpreter imports torch, timm and the ONNX packages, then exports
def test_script_exports_onnx(checkpoint):
    path = checkpoint("ftunetformer_rgb")
    arguments = ["--format", "onnx", "--tile-size", str(TILE), "--batch-size", "2"]
    done = run_python(SCRIPT, path, *arguments, timeout=600)
    assert done.returncode == 0, done.stderr
    exported = path.with_suffix(".onnx")  # the default output
    assert f"wrote {exported}" in done.stdout
    assert "(2, 3, 64, 64)" in done.stdout
    assert_matches_checkpoint(exported, path, top=255, batch_size=2)
    # the way docs/export.md shows to read the metadata, with onnxruntime alone
    session = onnxruntime.InferenceSession(str(exported), providers=["CPUExecutionProvider"])
    stored = session.get_modelmeta().custom_metadata_map["geoseg"]
    assert json.loads(stored) == read_export_metadata(exported)


def test_bands_the_network_does_not_read_are_refused(checkpoint, tmp_path):
    output = tmp_path / "m.onnx"
    with pytest.raises(ConfigError, match=r"bands=3: .* reads 4 bands \(4-band uint16 rasters"):
        export_model(checkpoint("ftunetformer_4band"), output, tile_size=TILE, bands=3)
    assert not output.exists()


def test_a_failing_export_leaves_nothing_behind(checkpoint, tmp_path, monkeypatch):
    output = tmp_path / "m.onnx"
    output.write_text("the previous export")

    def fail(*args, **kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(torch.onnx, "export", fail)
    with pytest.raises(RuntimeError, match="exporter failed"):
        export_model(checkpoint("ftunetformer_rgb"), output, tile_size=TILE)
    assert output.read_text() == "the previous export"
    assert not list(tmp_path.glob(".*tmp"))  # no temporary left


def test_an_export_that_computes_other_logits_is_not_written(checkpoint, tmp_path, monkeypatch):
    import geoseg.export

    run = geoseg.export.run_torchscript
    monkeypatch.setattr(geoseg.export, "run_torchscript", lambda path, image: run(path, image) + 1)
    output = tmp_path / "m.torchscript.pt"
    with pytest.raises(RuntimeError, match="differs from the PyTorch network by up to 1"):
        export_model(checkpoint("ftunetformer_rgb"), output, format="torchscript", tile_size=TILE)
    assert not output.exists() and not list(tmp_path.glob(".*tmp"))


def test_a_missing_onnx_package_is_named(checkpoint, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnxscript", None)  # makes `import onnxscript` fail
    with pytest.raises(ConfigError, match="needs the package onnxscript, not installed"):
        export_model(checkpoint("ftunetformer_rgb"), tmp_path / "m.onnx", tile_size=TILE)


@pytest.mark.slow  # a fresh interpreter imports torch, timm and the ONNX packages
def test_a_checkpoint_with_nan_weights_is_one_error_line_and_no_file(checkpoint, tmp_path):
    path = tmp_path / "nan.ckpt"
    saved = torch.load(checkpoint("unetformer_rgb"), weights_only=True)
    saved["state_dict"]["net.decoder.head.2.weight"].view(-1)[0] = float("nan")
    torch.save(saved, path)
    output = tmp_path / "m.onnx"
    done = run_python(SCRIPT, path, "--tile-size", TILE, "--output", output, timeout=600)
    assert done.returncode == 2 and done.stderr == (
        f"error: {path}: non-finite weights (NaN or inf) in decoder.head.2.weight: the checkpoint "
        "is unusable; use an earlier one (e.g. the -best.ckpt) or retrain\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nan.ckpt"]


def test_script_refuses_to_write_over_its_checkpoint(checkpoint, tmp_path):
    path = tmp_path / "m.ckpt"
    shutil.copy(checkpoint("unetformer_rgb"), path)
    before = file_digest(path)
    arguments = ["--output", str(path), "--format", "torchscript", "--tile-size", str(TILE)]
    done = run_python(SCRIPT, path, *arguments, timeout=600, cwd=REPO_ROOT)
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {path}: is the input {path}; refusing to write over it: choose another --output"
    ]
    assert file_digest(path) == before


# (checkpoint, output) as named to export_model, relative to tmp_path; m.ckpt is the real file
OVERWRITING = {
    "output_links_to_it": ("m.ckpt", "link.ckpt"),
    "checkpoint_given_by_a_link": ("link.ckpt", "m.ckpt"),
    "output_through_a_linked_folder": ("m.ckpt", "alias/m.ckpt"),
    "output_a_hard_link": ("m.ckpt", "hard.ckpt"),
    "default_output": ("m.onnx", None),  # m.onnx with the suffix .onnx is itself
}


@pytest.mark.parametrize("case", OVERWRITING)
def test_an_output_that_is_the_checkpoint_through_links_is_refused(checkpoint, tmp_path, case):
    source, output = OVERWRITING[case]
    real = tmp_path / ("m.onnx" if case == "default_output" else "m.ckpt")
    shutil.copy(checkpoint("unetformer_rgb"), real)
    (tmp_path / "link.ckpt").symlink_to(real)
    (tmp_path / "alias").symlink_to(tmp_path, target_is_directory=True)
    os.link(real, tmp_path / "hard.ckpt")
    before = sorted(p.name for p in tmp_path.iterdir()), file_digest(real)
    format = "onnx" if case == "default_output" else "torchscript"
    shown = real if output is None else tmp_path / output
    expected = f"{shown}: is the input {tmp_path / source}; refusing to write over it"
    with pytest.raises(DataError, match=f"^{re.escape(expected)}"):
        export_model(
            tmp_path / source,
            None if output is None else tmp_path / output,
            format=format,
            tile_size=TILE,
        )
    assert (sorted(p.name for p in tmp_path.iterdir()), file_digest(real)) == before
    assert (tmp_path / "link.ckpt").resolve() == real
