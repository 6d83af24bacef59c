"""Predicting a georeferenced scene of any size strip by strip, into Cloud-Optimized GeoTIFFs.

The scene is never read or held whole: tiles are read window by window, their merged maps are
blended into an accumulator that covers one strip of ``tile_size`` rows (on the CPU), and rows no
later tile touches are finalised and written. Peak memory grows with the scene's width, not its
area. Tile positions, blend weights and their order are those of
``EnsemblePredictor.merged_tiled``, so the result is the same as predicting the whole image.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio.windows import Window
from tqdm import tqdm

from geoseg.classes import IGNORE_INDEX, PALETTE
from geoseg.datasets.io import open_raster, raster_bands, raster_has_validity, read_raster_window
from geoseg.errors import DataError
from geoseg.files import write_atomic
from geoseg.inference.io import CONFIDENCE_DIR, remove_stale_temporaries
from geoseg.inference.tta import EnsemblePredictor, _blend_window, _tile_starts

# GDAL reads these with rasterio; they go through predict_scene and come out as GeoTIFFs.
SCENE_EXTENSIONS = (".tif", ".tiff")
BLOCK_SIZE = 512
FINAL_ROWS = 64  # rows finalised and written at a time
# GDAL's block cache defaults to 5% of the RAM; writing and copying a scene needs a few blocks.
GDAL_CACHE_MB = 64
CONFIDENCE_NODATA = 0  # a real confidence is at least 1/classes, so never rounds to 0


def is_scene(path: Path) -> bool:
    """Whether ``path`` is a GeoTIFF, predicted by ``predict_scene`` rather than as a PNG."""
    return path.suffix.lower() in SCENE_EXTENSIONS


def scene_output_paths(output_dir: Path, stem: str, save_confidence: bool) -> list[Path]:
    """Every file written for one scene; the class map comes last, so its presence means done."""
    paths = [output_dir / CONFIDENCE_DIR / f"{stem}.tif"] if save_confidence else []
    return [*paths, output_dir / f"{stem}.tif"]


def pending_scenes(inputs: list[Path], output_dir: Path, save_confidence: bool) -> list[Path]:
    """The scenes whose outputs are not all written yet (resuming an interrupted run)."""
    return [
        path
        for path in inputs
        if not all(p.is_file() for p in scene_output_paths(output_dir, path.stem, save_confidence))
    ]


def split_scenes(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """``inputs`` split into (GeoTIFF scenes, PNG/JPEG images), each in the given order."""
    return [p for p in inputs if is_scene(p)], [p for p in inputs if not is_scene(p)]


def predict_scenes(
    predictor: EnsemblePredictor,
    scenes: list[Path],
    output_dir: Path,
    *,
    tile_size: int = 1024,
    overlap: int = 128,
    tiles_per_batch: int = 4,
    save_confidence: bool = False,
    confidence_bits: int = 8,
    palette: tuple | None = None,
) -> None:
    """``predict_scene`` for each of ``scenes``, one at a time, into ``<output_dir>/<stem>.tif``
    (and ``confidence/<stem>.tif``)."""
    if not scenes:
        return
    for path in scene_output_paths(output_dir, "any", save_confidence):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path.parent)  # left by an interrupted run
    for source in tqdm(scenes, unit="scene"):
        *confidence, output = scene_output_paths(output_dir, source.stem, save_confidence)
        predict_scene(
            predictor,
            source,
            output,
            tile_size=tile_size,
            overlap=overlap,
            tiles_per_batch=tiles_per_batch,
            confidence_output=confidence[0] if confidence else None,
            confidence_bits=confidence_bits,
            palette=palette,
        )


def merged_scene(
    predictor: EnsemblePredictor,
    path: Path,
    dataset,
    *,
    tile_size: int = 1024,
    overlap: int = 128,
    tiles_per_batch: int = 4,
) -> Iterator[tuple[int, torch.Tensor, np.ndarray | None]]:
    """Yield ``(top, merged, valid)`` pieces of ``dataset``, at most ``FINAL_ROWS`` rows each, from
    top to bottom.

    ``merged`` is the (C, rows, width) float32 CPU map that ``predictor.merged_tiled`` gives for
    those rows of the whole image; ``valid`` the rows' (rows, width) validity (None: all valid).
    The strips cover the scene exactly once.
    """
    if not 0 <= overlap < tile_size:
        raise ValueError(f"overlap must be in [0, tile size {tile_size}), got {overlap}")
    if tiles_per_batch < 1:
        raise ValueError(f"tiles_per_batch must be at least 1, got {tiles_per_batch}")
    bands = raster_bands(path, dataset)
    height, width = dataset.height, dataset.width
    tops = _tile_starts(height, tile_size, overlap)
    lefts = _tile_starts(width, tile_size, overlap)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    cpu = torch.device("cpu")
    weight = _blend_window(tile_h, overlap, cpu)[:, None] * _blend_window(tile_w, overlap, cpu)
    # Rows [tops[i], tops[i] + tile_h): the only rows tiles of row i and later can still touch.
    total = weight_sum = None
    for row, top in enumerate(tops):
        image, valid = read_raster_window(path, dataset, bands, Window(0, top, width, tile_h))
        strip = torch.from_numpy(image).permute(2, 0, 1)  # (3, tile_h, width) uint8
        for start in range(0, len(lefts), tiles_per_batch):
            chunk = lefts[start : start + tiles_per_batch]
            tiles = torch.stack([strip[:, :, x : x + tile_w] for x in chunk])
            merged = predictor.merged(tiles).float().cpu()
            if total is None:
                total = merged.new_zeros(merged.shape[1], tile_h, width)
                weight_sum = merged.new_zeros(1, tile_h, width)
            for index, left in enumerate(chunk):
                total[:, :, left : left + tile_w] += weight * merged[index]
                weight_sum[:, :, left : left + tile_w] += weight
        # Rows above the next tile row are final; the last tile row finalises the rest. They go
        # out FINAL_ROWS at a time, so the finalised maps never take a strip's worth of memory.
        done = (tops[row + 1] if row + 1 < len(tops) else top + tile_h) - top
        for first in range(0, done, FINAL_ROWS):
            rows = slice(first, min(first + FINAL_ROWS, done))
            yield (
                top + first,
                total[:, rows] / weight_sum[:, rows],
                None if valid is None else valid[rows],
            )
        # Shift the accumulator up to the next tile row, in place; the rows below start empty.
        keep = tile_h - done
        total[:, :keep] = total[:, done:].clone()
        weight_sum[:, :keep] = weight_sum[:, done:].clone()
        total[:, keep:] = 0
        weight_sum[:, keep:] = 0


def predict_scene(
    predictor: EnsemblePredictor,
    source: Path,
    output: Path,
    *,
    tile_size: int = 1024,
    overlap: int = 128,
    tiles_per_batch: int = 4,
    confidence_output: Path | None = None,
    confidence_bits: int = 8,
    palette: tuple | None = None,
) -> None:
    """Predict the GeoTIFF ``source`` into the Cloud-Optimized GeoTIFF ``output``.

    ``output``: uint8 class ids with ``palette`` (default ``PALETTE``) as its colour map, the input's
    CRS and transform, 512 x 512 DEFLATE blocks and overviews (nearest). Where the input has a
    nodata value, mask or alpha, its invalid pixels are nodata 255 (no class). ``confidence_output``
    (optional): the merged map's top probability as round(confidence x (2**bits - 1)) in
    uint8/uint16, nodata 0 where the input is nodata. Each file is written under a hidden
    ``.<name>.tmp`` name and renamed, the class map last; an interrupted run leaves no partial file.
    """
    if confidence_bits not in (8, 16):
        raise ValueError(f"confidence_bits must be 8 or 16, got {confidence_bits}")
    source, output = Path(source), Path(output)
    levels, level_type = (255, "uint8") if confidence_bits == 8 else (65535, "uint16")
    palette = palette or PALETTE
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_raster(source) as dataset:
        raster_bands(source, dataset)  # an unsupported raster fails before any prediction
        masked = raster_has_validity(dataset)
        base = {
            "driver": "GTiff",
            "width": dataset.width,
            "height": dataset.height,
            "count": 1,
            "crs": dataset.crs,
            "transform": dataset.transform,
            "tiled": True,
            "blockxsize": BLOCK_SIZE,
            "blockysize": BLOCK_SIZE,
            "compress": "deflate",
            "zlevel": 1,  # the COG copy compresses again
            "BIGTIFF": "IF_SAFER",
        }
        classes_tmp = _strips_name(output)
        confidence_tmp = None if confidence_output is None else _strips_name(confidence_output)
        try:
            with rasterio.open(
                classes_tmp, "w", **base, dtype="uint8", nodata=IGNORE_INDEX if masked else None
            ) as classes:
                confidence = None
                if confidence_tmp is not None:
                    confidence_output.parent.mkdir(parents=True, exist_ok=True)
                    confidence = rasterio.open(
                        confidence_tmp,
                        "w",
                        **base,
                        dtype=level_type,
                        nodata=CONFIDENCE_NODATA if masked else None,
                    )
                try:
                    for top, merged, valid in merged_scene(
                        predictor,
                        source,
                        dataset,
                        tile_size=tile_size,
                        overlap=overlap,
                        tiles_per_batch=tiles_per_batch,
                    ):
                        probs = merged if predictor.merge == "probs" else merged.softmax(dim=0)
                        top_prob, pred = probs.max(dim=0)
                        pred = pred.to(torch.uint8).numpy()
                        window = Window(0, top, dataset.width, pred.shape[0])
                        if valid is not None:
                            pred[~valid] = IGNORE_INDEX
                        classes.write(pred, 1, window=window)
                        if confidence is not None:
                            scaled = (top_prob * levels).round().numpy().astype(level_type)
                            if valid is not None:
                                scaled[~valid] = CONFIDENCE_NODATA
                            confidence.write(scaled, 1, window=window)
                finally:
                    if confidence is not None:
                        confidence.close()
                classes.write_colormap(1, _colormap(palette))
            if confidence_tmp is not None:
                _write_cog(confidence_tmp, confidence_output, "AVERAGE")
            _write_cog(classes_tmp, output, "NEAREST")
        finally:
            for tmp in (classes_tmp, confidence_tmp):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)


def _strips_name(path: Path) -> Path:
    """The hidden tiled GTiff the strips are written to before the COG copy (``.<name>.*.tmp``,
    so ``remove_stale_temporaries`` cleans one an interrupted run left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.with_name(f".{path.name}.strips.tmp")


def _colormap(palette: tuple) -> dict[int, tuple[int, int, int, int]]:
    if len(palette) > IGNORE_INDEX:
        raise DataError(f"a palette of {len(palette)} colours leaves no room for nodata 255")
    colours = {index: (*map(int, colour[:3]), 255) for index, colour in enumerate(palette)}
    colours[IGNORE_INDEX] = (0, 0, 0, 0)  # nodata: transparent
    return colours


def _write_cog(strips: Path, output: Path, resampling: str) -> None:
    """Copy the tiled GTiff ``strips`` to ``output`` as a Cloud-Optimized GeoTIFF (512 blocks,
    DEFLATE, overviews), through a temporary name and a rename. The COG driver keeps the colour
    map, nodata and georeferencing."""

    def copy(tmp: Path) -> None:
        rasterio.shutil.copy(
            os.fspath(strips),
            os.fspath(tmp),
            driver="COG",
            compress="DEFLATE",
            overview_resampling=resampling,
            blocksize=BLOCK_SIZE,
            BIGTIFF="IF_SAFER",
        )

    write_atomic(output, copy)
