"""Portable models: a checkpoint as one ONNX or TorchScript file that needs neither this project
nor its Python code to run.

The exported model takes tiles of raw bands on their native scale (0-255 for 8-bit RGB, raw values
for other rasters), float32 of shape (batch, bands, tile, tile), and returns float32 logits
(batch, classes, tile, tile): the network's band scaling and mean/std normalisation are part of
the graph. Height and width are fixed to the tile size (the network's padding to whole strides is
decided from them); the batch dimension is dynamic unless ``batch_size`` fixes it.

The file carries what a caller needs to feed it and read its output, as JSON under one key,
``"geoseg"``: the input contract (bands, raster count, data type, scaling, normalisation, tile
size), the class names, palette and ignore id, and the model class. ONNX keeps it in the model's
``metadata_props``, TorchScript as the extra file ``geoseg.json``; ``read_export_metadata`` reads
either. Every export is run once on a random batch and compared with the PyTorch network before
the file is renamed into place.
"""

import importlib
import json
import logging
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from geoseg.bands import RasterInput, describe_input
from geoseg.errors import CheckpointError, ConfigError
from geoseg.files import refuse_overwriting_input, write_atomic
from geoseg.models import ModelSpec, load_model_and_spec

__all__ = [
    "EXPORT_FORMATS",
    "METADATA_KEY",
    "ExportResult",
    "default_output",
    "describe_export",
    "export_model",
    "read_export_metadata",
]

EXPORT_FORMATS = ("onnx", "torchscript")
DEFAULT_SUFFIXES = {"onnx": ".onnx", "torchscript": ".torchscript.pt"}
METADATA_KEY = "geoseg"
TORCHSCRIPT_METADATA_FILE = "geoseg.json"
ZIP_MAGIC = b"PK\x03\x04"  # TorchScript files are zip archives
# 1: the first layout of the metadata below; bump it when a reader must tell layouts apart.
EXPORT_FORMAT_VERSION = 1
# Opset 18: onnxruntime has run it since 1.14 and other runtimes widely do. (The files are
# stamped IR version 10 by onnx >= 1.16, which onnxruntime reads from 1.18 on.)
ONNX_OPSET = 18
INPUT_NAME, OUTPUT_NAME = "image", "logits"
# The export is traced on a batch of 2: torch.export treats a dimension of size 1 as a constant,
# which silently fixes the batch to 1 (seen with the Swin backbone); the check runs on a batch of
# 3 so a batch other than the traced one is proven to work.
TRACE_BATCH, CHECK_BATCH = 2, 3
# The check after export refuses logits further than this fraction of their largest value from
# the network's: another function (a shape or branch frozen wrongly) is. Rounding differs between
# runtimes and a network's layers can magnify it: with sharpened norm layers, PyTorch's own float32
# and float64 logits were seen 1e-3 of that value apart, and ONNX Runtime's 1e-3 from float32.
CHECK_RELATIVE_TOLERANCE = 1e-2


@dataclass(frozen=True)
class ExportResult:
    """What ``export_model`` wrote: the file, its metadata and the largest absolute difference
    between its logits and the PyTorch network's on a random batch."""

    path: Path
    metadata: dict
    max_abs_difference: float


class PortableModel(nn.Module):
    """The traced wrapper: raw bands (B, C, tile, tile) float32 -> logits (B, K, tile, tile)
    float32; only the main head (no auxiliary logits), whatever precision the network computes in.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net(image).float()


def default_output(checkpoint: str | os.PathLike, format: str) -> Path:
    """``checkpoint`` with the format's suffix: ``m.ckpt`` -> ``m.onnx`` / ``m.torchscript.pt``."""
    return Path(checkpoint).with_suffix(DEFAULT_SUFFIXES[check_format(format)])


def check_format(format: str) -> str:
    if format not in EXPORT_FORMATS:
        raise ConfigError(f"format={format!r}: expected one of {', '.join(EXPORT_FORMATS)}")
    return format


def export_model(
    checkpoint: str | os.PathLike,
    output: str | os.PathLike | None = None,
    *,
    format: str = "onnx",
    tile_size: int = 512,
    bands: int | None = None,
    batch_size: int | None = None,
) -> ExportResult:
    """Export the network of ``checkpoint`` to ``output`` (default: ``default_output``).

    ``format``: ``"onnx"`` (torch.export-based exporter, opset 18; needs the packages onnx,
    onnxscript and onnxruntime) or ``"torchscript"`` (``torch.jit.trace``). ``tile_size``: the
    fixed height and width of the input. ``bands``: the band count the caller will feed; a
    ConfigError unless the network reads exactly that many. ``batch_size``: None (default) for a
    dynamic batch dimension, which both exporters keep reliably for the networks here (the
    export is checked on a batch other than the traced one); a number fixes it.

    The file is written under a temporary name, checked against the PyTorch network and renamed;
    on any failure nothing is left at ``output``. An ``output`` that is the checkpoint itself
    (also through links) is a DataError, raised before anything is loaded.
    """
    format, tile_size = check_format(format), int(tile_size)
    output = Path(output) if output is not None else default_output(checkpoint, format)
    refuse_overwriting_input(output, checkpoint)
    if tile_size < 1:
        raise ConfigError(f"tile_size={tile_size}: expected a positive number of pixels")
    if batch_size is not None and int(batch_size) < 1:
        raise ConfigError(f"batch_size={batch_size}: expected at least 1, or None (dynamic)")
    if format == "onnx":
        onnx_modules()  # a missing package is named before the model is loaded
    net, spec = load_model_and_spec(checkpoint)
    if bands is not None and int(bands) != net.in_chans:
        raise ConfigError(
            f"bands={bands}: {checkpoint} holds a {spec.model_class} that reads {net.in_chans} "
            f"bands ({describe_input(spec.raster)}); export it with bands={net.in_chans}"
        )
    metadata = export_metadata(spec, net.in_chans, tile_size, batch_size, format)
    model = PortableModel(net).eval()
    trace_batch = batch_size or TRACE_BATCH
    check_batch = batch_size or CHECK_BATCH
    generator = torch.Generator().manual_seed(0)
    shape = (net.in_chans, tile_size, tile_size)
    example = native_scale_sample(spec, trace_batch, shape, generator)
    check_input = native_scale_sample(spec, check_batch, shape, generator)
    with torch.no_grad():
        expected = model(check_input)
    difference = float("nan")

    def write(tmp: Path) -> None:
        nonlocal difference
        if format == "onnx":
            write_onnx(model, example, metadata, tmp, dynamic_batch=batch_size is None)
            logits = run_onnx(tmp, check_input)
        else:
            write_torchscript(model, example, metadata, tmp)
            logits = run_torchscript(tmp, check_input)
        difference = check_logits(logits, expected, format)

    write_atomic(output, write)
    return ExportResult(output, metadata, difference)


def export_metadata(
    spec: ModelSpec, in_chans: int, tile_size: int, batch_size: int | None, format: str
) -> dict:
    """The JSON-able record stored in the exported file (see the module docstring)."""
    raster = spec.raster
    return {
        "format_version": EXPORT_FORMAT_VERSION,
        "format": format,
        "model_class": spec.model_class,
        "architecture_version": spec.architecture_version,
        "classes": list(spec.classes),
        "palette": [list(colour) for colour in spec.palette],
        "ignore_index": spec.ignore_index,
        "input": {
            "name": INPUT_NAME,
            "dtype": "float32",
            "layout": "NCHW",
            "batch_size": batch_size,  # None: dynamic
            "in_chans": in_chans,
            "tile_size": tile_size,
            # None: 8-bit RGB on the 0-255 scale; else the bands to read and their scaling
            "raster": None if raster is None else raster.to_dict(),
            "normalization": spec.normalization,
            "describe": f"{describe_input(raster)} on their native scale; the band scaling and "
            "normalisation are inside the model",
        },
        "output": {
            "name": OUTPUT_NAME,
            "dtype": "float32",
            "layout": "NCHW",
            "num_classes": spec.num_classes,
        },
    }


def native_scale_sample(
    spec: ModelSpec, batch: int, shape: tuple[int, int, int], generator: torch.Generator
) -> torch.Tensor:
    """Random tiles (batch, *shape) on the network's native input scale, so the check runs the
    network where real inputs put it: 0-255 for 8-bit RGB, the range the raster's scaling maps to
    [0, 1], or mean +- a few std of unscaled bands."""
    raster: RasterInput | None = spec.raster
    uniform = torch.rand(batch, *shape, generator=generator)
    scaling = None if raster is None else raster.scaling
    if scaling is not None and "divisor" in scaling:
        return uniform * scaling["divisor"]
    if scaling is not None:
        low = torch.tensor(scaling["low"]).view(1, -1, 1, 1)
        high = torch.tensor(scaling["high"]).view(1, -1, 1, 1)
        return low + uniform * (high - low)
    if raster is None or raster.dtype == "uint8":
        return uniform * 255
    normalization = spec.normalization or {"mean": [0.0] * shape[0], "std": [1.0] * shape[0]}
    mean = torch.tensor(normalization["mean"]).view(1, -1, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, -1, 1, 1)
    return mean + (uniform * 4 - 2) * std


def check_logits(logits: np.ndarray, expected: torch.Tensor, format: str) -> float:
    """The largest absolute difference; a RuntimeError if the exported model computes another
    function (this is an exporter limitation for the network, not a user error)."""
    expected = expected.numpy()
    if logits.shape != expected.shape:
        raise RuntimeError(
            f"the {format} export returns logits of shape {logits.shape}, the network "
            f"{expected.shape}"
        )
    difference = float(np.abs(logits - expected).max())
    allowed = CHECK_RELATIVE_TOLERANCE * max(1.0, float(np.abs(expected).max()))
    if not difference <= allowed:
        raise RuntimeError(
            f"the {format} export differs from the PyTorch network by up to {difference:.3g} "
            f"(allowed {allowed:.3g}) on a random batch; it is not written"
        )
    return difference


# --- ONNX ----------------------------------------------------------------------------------------

# the first release whose torch.onnx.export(dynamo=True) is the torch.export-based exporter
MINIMUM_TORCH_FOR_ONNX = "2.6"
# onnxscript translates torch.export graphs to ONNX; onnxruntime runs the check after export
ONNX_PACKAGES = ("onnx", "onnxscript", "onnxruntime")
ONNX_LOGGERS = ("onnxscript", "onnx_ir", "torch.onnx")


def onnx_modules() -> dict:
    """The ONNX packages, imported only when ONNX is asked for; a ConfigError names any missing."""
    modules, missing = {}, []
    for name in ONNX_PACKAGES:
        try:
            modules[name] = importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if torch.__version__ < MINIMUM_TORCH_FOR_ONNX:  # TorchVersion compares as a version
        raise ConfigError(
            f"ONNX export needs torch >= {MINIMUM_TORCH_FOR_ONNX} (its torch.export-based "
            f"exporter); this is torch {torch.__version__}. TorchScript export works with it"
        )
    if missing:
        raise ConfigError(
            f"ONNX export needs the package{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)}, not installed: pip install {' '.join(missing)} (listed in "
            "requirements.txt)"
        )
    return modules


def write_onnx(
    model: nn.Module, example: torch.Tensor, metadata: dict, path: Path, *, dynamic_batch: bool
) -> None:
    """``model`` traced on ``example`` as an ONNX file with ``metadata`` under "geoseg".

    The torch.export-based exporter (``dynamo=True``) is used: it is torch's default and
    maintained one; the TorchScript-based exporter (``dynamo=False``) also exports these networks
    and is several times faster, but is deprecated since torch 2.9.
    """
    batch = torch.export.Dim("batch", min=1) if dynamic_batch else None
    # The scripts log at INFO, where the ONNX optimiser reports each of its hundreds of rewrites.
    with quiet_loggers(ONNX_LOGGERS):
        program = torch.onnx.export(
            model,
            (example,),
            dynamo=True,
            opset_version=ONNX_OPSET,
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},) if dynamic_batch else None,
            optimize=True,
            verbose=False,
        )
    program.model.metadata_props[METADATA_KEY] = json.dumps(metadata)
    # one self-contained file; past protobuf's 2 GB limit this fails rather than writing a
    # side file the atomic rename would not move
    program.save(str(path), external_data=False)


@contextmanager
def quiet_loggers(names: tuple[str, ...], level: int = logging.WARNING):
    """Raise the level of the loggers ``names`` to at least ``level`` for the block."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(level, logger.getEffectiveLevel()))
    try:
        yield
    finally:
        for logger, previous in zip(loggers, levels, strict=True):
            logger.setLevel(previous)


def run_onnx(path: Path, image: torch.Tensor) -> np.ndarray:
    """The logits of the ONNX file at ``path`` for ``image``, with onnxruntime on the CPU."""
    onnxruntime = onnx_modules()["onnxruntime"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: image.numpy()})[0]


# --- TorchScript ---------------------------------------------------------------------------------


@contextmanager
def torchscript_warnings_silenced():
    """The tracer warns at every Python branch on a shape: with the tile size fixed, freezing them
    is what is meant, and the check after export covers another batch size. torch.jit also warns
    on each call that it is deprecated in favour of torch.export, which is what the ONNX export
    uses; TorchScript is written only when asked for by name, so the warning says nothing new."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", r".*torch\.jit\..* is deprecated", FutureWarning)
        yield


def write_torchscript(model: nn.Module, example: torch.Tensor, metadata: dict, path: Path) -> None:
    """``model`` traced on ``example`` as TorchScript with ``metadata`` as geoseg.json."""
    with torchscript_warnings_silenced(), torch.no_grad():
        # check_trace would trace a second time; the check after export compares outputs anyway
        traced = torch.jit.trace(model, (example,), check_trace=False)
        torch.jit.save(
            traced, str(path), _extra_files={TORCHSCRIPT_METADATA_FILE: json.dumps(metadata)}
        )


def run_torchscript(path: Path, image: torch.Tensor) -> np.ndarray:
    with torchscript_warnings_silenced(), torch.no_grad():
        return torch.jit.load(str(path), map_location="cpu")(image).numpy()


# --- reading -------------------------------------------------------------------------------------


def read_export_metadata(path: str | os.PathLike) -> dict:
    """The metadata dict an ONNX or TorchScript file from ``export_model`` carries.

    TorchScript files are zip archives, ONNX files protobuf; a file of neither kind, or one
    without the record, is a CheckpointError.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: exported model not found")
    with path.open("rb") as file:
        # a zip archive's first local header; the end-of-archive signature that
        # zipfile.is_zipfile looks for could also occur by chance in an ONNX file's weights
        is_zip = file.read(4) == ZIP_MAGIC
    if is_zip:
        extra_files = {TORCHSCRIPT_METADATA_FILE: ""}
        try:
            with torchscript_warnings_silenced():
                torch.jit.load(str(path), map_location="cpu", _extra_files=extra_files)
        except Exception as error:  # torch raises several types for files it cannot read
            raise CheckpointError(f"{path}: not a readable TorchScript file ({error})") from error
        text = extra_files[TORCHSCRIPT_METADATA_FILE]
        text = text.decode() if isinstance(text, bytes) else text
    else:
        onnx = onnx_modules()["onnx"]
        try:
            model = onnx.load(str(path), load_external_data=False)
        except Exception as error:  # protobuf's DecodeError and others
            raise CheckpointError(f"{path}: not a readable ONNX file ({error})") from error
        text = {prop.key: prop.value for prop in model.metadata_props}.get(METADATA_KEY, "")
    if not text:
        raise CheckpointError(
            f"{path}: no '{METADATA_KEY}' metadata; was it written by export_model.py?"
        )
    metadata = json.loads(text)
    if metadata.get("format_version", 0) > EXPORT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: export metadata version {metadata['format_version']} is newer than this "
            f"code reads ({EXPORT_FORMAT_VERSION}); update geoseg"
        )
    return metadata


def describe_export(result: ExportResult) -> str:
    """A few lines on what was written, for the export script."""
    meta = result.metadata
    inputs, outputs = meta["input"], meta["output"]
    batch = "batch" if inputs["batch_size"] is None else str(inputs["batch_size"])
    tile = inputs["tile_size"]
    where = (
        f'metadata_props["{METADATA_KEY}"]'
        if meta["format"] == "onnx"
        else f'the extra file "{TORCHSCRIPT_METADATA_FILE}"'
    )
    size_mb = result.path.stat().st_size / 1e6
    return "\n".join(
        [
            f"wrote {result.path} ({meta['format']}, {size_mb:.1f} MB): {meta['model_class']}, "
            f"{outputs['num_classes']} classes ({', '.join(meta['classes'])}), ignore index "
            f"{meta['ignore_index']}",
            f'  input  "{inputs["name"]}": float32 ({batch}, {inputs["in_chans"]}, {tile}, '
            f"{tile}), {inputs['describe']}",
            f'  output "{outputs["name"]}": float32 ({batch}, {outputs["num_classes"]}, {tile}, '
            f"{tile})",
            f"  checked against PyTorch on a random batch: max abs difference "
            f"{result.max_abs_difference:.2g}",
            f"  metadata: JSON in {where} (geoseg.export.read_export_metadata)",
        ]
    )
