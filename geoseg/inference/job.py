"""A prediction job: where the maps of a folder of inputs go, how they are tiled, batched and
stored, and which of them are still to do. PNG/JPEG tiles and GeoTIFF scenes share it."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
import torch

from geoseg.bands import RasterInput
from geoseg.classes import IGNORE_INDEX, PALETTE
from geoseg.errors import DataError
from geoseg.inference.io import CONFIDENCE_DIR, RGB_DIR, SOURCE_TAG, png_is_complete, source_record
from geoseg.inference.windows import SCENE_TILE_SIZE, SCENE_TILES_PER_BATCH, check_overlap

# GDAL reads these with rasterio; they are predicted as scenes and come out as GeoTIFFs.
SCENE_EXTENSIONS = (".tif", ".tiff")
CONFIDENCE_NODATA = 0  # a real confidence is at least 1/classes, so never rounds to 0


def is_scene(path: Path) -> bool:
    """Whether ``path`` is a GeoTIFF, predicted as a scene rather than as a PNG tile."""
    return path.suffix.lower() in SCENE_EXTENSIONS


def split_scenes(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """``inputs`` split into (GeoTIFF scenes, PNG/JPEG images), each in the given order."""
    return [p for p in inputs if is_scene(p)], [p for p in inputs if not is_scene(p)]


@dataclass(frozen=True)
class PredictionJob:
    """How the inputs of one run are predicted into ``output_dir``.

    ``<stem>.png`` (uint8 class ids) for a PNG/JPEG input, ``<stem>.tif`` (a Cloud-Optimized
    GeoTIFF on the input's grid) for a GeoTIFF scene; with ``save_rgb`` also ``rgb/<stem>.png``
    (PNG inputs: a GeoTIFF carries the palette as its colour map), with ``save_confidence``
    ``confidence/<stem>.png|.tif``: the merged map's top probability as
    round(p x (2**confidence_bits - 1)).

    ``tile_size``: sliding windows of this size (None: PNG tiles whole, scenes in windows of
    ``SCENE_TILE_SIZE``), overlapping by ``overlap``. ``batch_size``: images per forward pass
    (default 1), or windows of a scene (default ``SCENE_TILES_PER_BATCH``). ``num_workers``: PNG
    decoding processes. ``palette``: the colours of rgb/ and of the GeoTIFF colour map (None:
    ``PALETTE``). ``raster``: the bands the networks read (None: 8-bit RGB); pixels a raster marks
    as nodata are 255 in the map and 0 in the confidence. ``settings``: the caller's record of the
    prediction settings, stored in every map beside the input's ``source_record``.
    """

    output_dir: Path
    tile_size: int | None = None
    overlap: int = 128
    batch_size: int | None = None
    num_workers: int = 2
    save_rgb: bool = False
    save_confidence: bool = False
    confidence_bits: int = 8
    palette: tuple | None = None
    raster: RasterInput | None = None
    settings: dict | None = None

    def __post_init__(self) -> None:
        if self.confidence_bits not in (8, 16):
            raise ValueError(f"confidence_bits must be 8 or 16, got {self.confidence_bits}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")
        check_overlap(self.overlap, self.scene_tile_size)
        object.__setattr__(self, "output_dir", Path(self.output_dir))

    @property
    def scene_tile_size(self) -> int:
        return self.tile_size or SCENE_TILE_SIZE

    @property
    def images_per_batch(self) -> int:
        return self.batch_size or 1

    @property
    def tiles_per_batch(self) -> int:
        return self.batch_size or SCENE_TILES_PER_BATCH

    @property
    def colours(self) -> tuple:
        return self.palette or PALETTE

    @property
    def confidence_dtype(self) -> type:
        return np.uint8 if self.confidence_bits == 8 else np.uint16

    def outputs(self, source: Path) -> list[Path]:
        """Every file written for ``source``; the class map comes last, so its presence means done."""
        suffix = ".tif" if is_scene(source) else ".png"
        paths = []
        if self.save_rgb and suffix == ".png":
            paths.append(self.output_dir / RGB_DIR / f"{source.stem}.png")
        if self.save_confidence:
            paths.append(self.output_dir / CONFIDENCE_DIR / f"{source.stem}{suffix}")
        return [*paths, self.output_dir / f"{source.stem}{suffix}"]

    def record(self, source: Path, fingerprint: dict | None = None) -> str:
        """The ``source_record`` every output of ``source`` carries (``fingerprint``: taken before
        the read; None: now)."""
        return source_record(source, self.settings, fingerprint)

    def still_to_do(self, inputs: list[Path]) -> list[Path]:
        """The one resume rule of PNG tiles and GeoTIFF scenes: the ``inputs`` of which one output
        is not whole or does not carry the record of the input as it is now under these settings
        (cut short, left by a lost race or by a version of this code without records, or computed
        from an input since replaced or with other settings). An input that cannot be read is to
        do (predicting it names the problem)."""
        pending = []
        for path in inputs:
            try:
                record = self.record(path)
            except DataError:
                pending.append(path)
                continue
            if not all(is_complete(output, record) for output in self.outputs(path)):
                pending.append(path)
        return pending

    def stored_maps(
        self, pred: torch.Tensor, confidence: torch.Tensor, valid: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``EnsemblePredictor.decide``'s class ids and confidence as stored: uint8 ids, and the
        confidence quantised to ``confidence_bits``; where ``valid`` is False, 255 and
        ``CONFIDENCE_NODATA``."""
        pred = pred.to(torch.uint8).cpu().numpy()
        levels = 2**self.confidence_bits - 1
        confidence = (confidence * levels).round().cpu().numpy().astype(self.confidence_dtype)
        if valid is not None:
            pred[~valid] = IGNORE_INDEX
            confidence[~valid] = CONFIDENCE_NODATA
        return pred, confidence


def is_complete(output: Path, record: str) -> bool:
    """Whether the map ``output`` (PNG or GeoTIFF) is whole and carries ``record``."""
    checks: dict[str, Callable[[Path, str], bool]] = {".tif": scene_is_complete}
    return checks.get(output.suffix, png_is_complete)(output, record)


def scene_is_complete(output: Path, record: str) -> bool:
    """Whether the GeoTIFF ``output`` is a finished map of what ``record`` (``source_record``)
    describes: it carries that record as its ``SOURCE_TAG`` metadata item, and its last block of
    full resolution, the end of a Cloud-Optimized GeoTIFF, reads. A map without the record (cut
    short before its metadata, left by a lost race or by a version of this code without records)
    or with another (an input since replaced, other settings) is not; nor is one cut short after
    its header. Cheap: a header and one block per map."""
    try:
        with rasterio.open(output) as dataset:
            if dataset.tags().get(SOURCE_TAG) != record:
                return False
            (block_rows, block_columns), (height, width) = dataset.block_shapes[0], dataset.shape
            last = dataset.block_window(1, (height - 1) // block_rows, (width - 1) // block_columns)
            dataset.read(1, window=last)
    except rasterio.errors.RasterioError:
        return False
    return True
