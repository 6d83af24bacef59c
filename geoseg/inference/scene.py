"""Predicting a georeferenced scene of any size tile by tile, into Cloud-Optimized GeoTIFFs.

The scene is never read or held whole: each tile's window is read on its own, the merged maps of a
batch of tiles are blended (on the CPU) into the columns that no later tile of their row touches,
and those are finalised and written as they come. Peak memory depends on the tile size and the
batch, not on the scene's size, apart from the partial sums of the ``overlap`` rows between two
tile rows (classes x overlap x scene width float32, and their weights: 59 MB for a scene 16,384 px
wide, 6 classes and an overlap of 128). Tile positions, blend weights and the order of sums are
those of ``EnsemblePredictor.merged_tiled``, so the result is the same as predicting the whole
image.
"""

import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
import torch
from rasterio._err import CPLE_BaseError  # GDAL's own errors; rasterio exports them nowhere else
from rasterio.errors import RasterioError
from rasterio.windows import Window
from tqdm import tqdm

from geoseg.bands import RasterInput
from geoseg.classes import IGNORE_INDEX, PALETTE
from geoseg.datasets.io import (
    computable,
    open_raster,
    raster_bands,
    raster_has_validity,
    read_raster_window,
)
from geoseg.errors import DataError, GeoSegError, PredictionError
from geoseg.files import remove_stale_temporaries, temporary_name, write_atomic, write_error
from geoseg.inference.io import CONFIDENCE_DIR, SOURCE_TAG, source_record, still_to_do
from geoseg.inference.tta import EnsemblePredictor
from geoseg.inference.windows import (
    SCENE_TILE_SIZE,
    SCENE_TILES_PER_BATCH,
    blend_window,
    check_overlap,
    tile_starts,
)

# GDAL reads these with rasterio; they go through predict_scene and come out as GeoTIFFs.
SCENE_EXTENSIONS = (".tif", ".tiff")
BLOCK_SIZE = 512
FINAL_ROWS = 64  # rows finalised and written at a time
# GDAL's block cache defaults to 5% of the RAM; writing and copying a scene needs a few blocks.
GDAL_CACHE_MB = 64
CONFIDENCE_NODATA = 0  # a real confidence is at least 1/classes, so never rounds to 0
# what GDAL raises when a write fails (a full disk: "Write failed", "TIFFAppendToStrip")
RASTER_WRITE_FAILURES = (OSError, RasterioError, CPLE_BaseError)


def is_scene(path: Path) -> bool:
    """Whether ``path`` is a GeoTIFF, predicted by ``predict_scene`` rather than as a PNG."""
    return path.suffix.lower() in SCENE_EXTENSIONS


def scene_output_paths(output_dir: Path, stem: str, save_confidence: bool) -> list[Path]:
    """Every file written for one scene; the class map comes last, so its presence means done."""
    paths = [output_dir / CONFIDENCE_DIR / f"{stem}.tif"] if save_confidence else []
    return [*paths, output_dir / f"{stem}.tif"]


def pending_scenes(
    inputs: list[Path], output_dir: Path, save_confidence: bool, settings: dict | None = None
) -> list[Path]:
    """The scenes whose outputs are not all written, whole, from the scene as it is now and with
    these ``settings`` (resuming; see ``scene_is_complete``)."""

    def outputs(path: Path) -> list[Path]:
        return scene_output_paths(output_dir, path.stem, save_confidence)

    return still_to_do(inputs, outputs, scene_is_complete, settings)


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


def split_scenes(inputs: list[Path]) -> tuple[list[Path], list[Path]]:
    """``inputs`` split into (GeoTIFF scenes, PNG/JPEG images), each in the given order."""
    return [p for p in inputs if is_scene(p)], [p for p in inputs if not is_scene(p)]


def predict_scenes(
    predictor: EnsemblePredictor,
    scenes: list[Path],
    output_dir: Path,
    *,
    tile_size: int = SCENE_TILE_SIZE,
    overlap: int = 128,
    tiles_per_batch: int = SCENE_TILES_PER_BATCH,
    save_confidence: bool = False,
    confidence_bits: int = 8,
    palette: tuple | None = None,
    raster: RasterInput | None = None,
    leftovers_of: list[Path] | None = None,
    settings: dict | None = None,
) -> None:
    """``predict_scene`` for each of ``scenes``, one at a time, into ``<output_dir>/<stem>.tif``
    (and ``confidence/<stem>.tif``), each carrying ``settings`` in its record. Every scene's band
    layout is checked first, so that a scene the networks cannot read fails before hours of work
    on the others. Temporary files that interrupted runs left for ``leftovers_of`` (default:
    ``scenes``) are deleted; those of runs still writing into the folder are not."""
    if not scenes:
        return
    for source in scenes:
        with open_raster(source) as dataset:
            raster_bands(source, dataset, raster)
    for path in scene_output_paths(output_dir, "any", save_confidence):
        path.parent.mkdir(parents=True, exist_ok=True)
        owned = scenes if leftovers_of is None else leftovers_of
        remove_stale_temporaries(path.parent, [source.stem for source in owned])
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
            raster=raster,
            progress=True,
            settings=settings,
        )


def merged_scene(
    predictor: EnsemblePredictor,
    path: Path,
    dataset,
    *,
    tile_size: int = SCENE_TILE_SIZE,
    overlap: int = 128,
    tiles_per_batch: int = SCENE_TILES_PER_BATCH,
    raster: RasterInput | None = None,
    progress: bool = False,
) -> Iterator[tuple[int, int, torch.Tensor, np.ndarray | None]]:
    """Yield ``(top, left, merged, valid)`` pieces of ``dataset``, at most ``FINAL_ROWS`` rows each.

    ``merged`` is the (C, rows, columns) float32 CPU map that ``predictor.merged_tiled`` gives for
    that window of the whole image; ``valid`` the window's (rows, columns) validity (None: all
    valid). The pieces cover the scene exactly once, tile row by tile row, left to right within
    one. ``raster``: the bands the networks read (None: RGB). ``progress``: show a bar of tiles.

    Memory depends on the tile size and ``tiles_per_batch``, not on the scene: tiles are read one
    window at a time, and a batch's merged maps are blended only into the columns that no later
    tile of the row touches, which are then emitted. Across tile rows only the partial sums of the
    ``overlap`` rows the next tile row blends into are kept (C x overlap x width float32: the one
    part that grows with the width). A last tile row pushed up against the bottom border overlaps
    the one above by more than ``overlap``; the two are predicted side by side instead.
    """
    check_overlap(overlap, tile_size)
    if tiles_per_batch < 1:
        raise ValueError(f"tiles_per_batch must be at least 1, got {tiles_per_batch}")
    bands = raster_bands(path, dataset, raster)
    masked = raster_has_validity(dataset)
    height, width = dataset.height, dataset.width
    tops = tile_starts(height, tile_size, overlap)
    lefts = tile_starts(width, tile_size, overlap)
    tile_h, tile_w = min(tile_size, height), min(tile_size, width)
    cpu = torch.device("cpu")
    weight = blend_window(tile_h, overlap, cpu)[:, None] * blend_window(tile_w, overlap, cpu)
    batches = [lefts[at : at + tiles_per_batch] for at in range(0, len(lefts), tiles_per_batch)]
    # Tile rows predicted together (a pass): one, or the last two where they overlap by more than
    # ``overlap``, so that no more than ``overlap`` rows are carried from one pass to the next.
    passes: list[list[int]] = []
    for row, top in enumerate(tops):
        if passes and tops[row - 1] + tile_h - top > overlap:
            passes[-1].append(top)
        else:
            passes.append([top])
    # Per pass: its tile tops, the rows its tiles cover, and the rows final once it is done.
    plans = []
    for index, pass_tops in enumerate(passes):
        following = passes[index + 1][0] if index + 1 < len(passes) else height
        plans.append((pass_tops, pass_tops[-1] + tile_h - pass_tops[0], following - pass_tops[0]))
    most_carried = max(rows - done for _, rows, done in plans)
    # Partial sums of the rows the next pass still blends into, over the whole width. A pass reads
    # and then overwrites them column by column, so one buffer serves as carry-in and carry-out.
    carried = carried_weight = None
    carried_rows = 0
    with tqdm(total=len(tops) * len(lefts), unit="tile", leave=False, disable=not progress) as bar:
        for pass_tops, rows_in_pass, done in plans:
            top = pass_tops[0]
            keep = rows_in_pass - done
            # Per tile row of the pass, left to right: the columns of merged tiles not blended yet,
            # as (first column, merged (C, tile_h, n), weights (tile_h, n), validity or None).
            pending: list[list[tuple]] = [[] for _ in pass_tops]
            blended = 0  # columns left of it are emitted
            for number, chunk in enumerate(batches):
                for row_pending, tile_top in zip(pending, pass_tops, strict=True):
                    windows = [Window(left, tile_top, tile_w, tile_h) for left in chunk]
                    merged, valids = _merged_windows(
                        predictor, path, dataset, bands, windows, raster
                    )
                    row_pending += zip(chunk, merged, [weight] * len(chunk), valids, strict=True)
                    bar.update(len(chunk))
                # The tiles of the next batch start at `final`: the columns left of it are complete.
                final = batches[number + 1][0] if number + 1 < len(batches) else width
                columns = slice(blended, final)
                classes = merged.shape[1]
                total = torch.zeros(classes, rows_in_pass, final - blended)
                weight_sum = torch.zeros(1, rows_in_pass, final - blended)
                valid = np.zeros((rows_in_pass, final - blended), bool) if masked else None
                if carried_rows:
                    total[:, :carried_rows] = carried[:, :carried_rows, columns]
                    weight_sum[:, :carried_rows] = carried_weight[:, :carried_rows, columns]
                # Tile rows in order, each left to right: the whole image's order of sums per pixel.
                for row_pending, tile_top in zip(pending, pass_tops, strict=True):
                    rows = slice(tile_top - top, tile_top - top + tile_h)
                    for start, tile, tile_weight, tile_valid in row_pending:
                        count = min(start + tile.shape[-1], final) - start
                        into = slice(start - blended, start - blended + count)
                        total[:, rows, into] += tile_weight[:, :count] * tile[:, :, :count]
                        weight_sum[:, rows, into] += tile_weight[:, :count]
                        if valid is not None:
                            valid[rows, into] = tile_valid[:, :count]
                for first in range(0, done, FINAL_ROWS):
                    rows = slice(first, min(first + FINAL_ROWS, done))
                    yield (
                        top + first,
                        blended,
                        total[:, rows] / weight_sum[:, rows],
                        None if valid is None else valid[rows],
                    )
                if keep:
                    if carried is None:
                        carried = torch.zeros(classes, most_carried, width)
                        carried_weight = torch.zeros(1, most_carried, width)
                    carried[:, :keep, columns] = total[:, done:]
                    carried_weight[:, :keep, columns] = weight_sum[:, done:]
                blended = final
                for row_pending in pending:
                    row_pending[:] = _columns_from(row_pending, final)
                del merged, total, weight_sum, valid  # freed before the next batch is predicted
            carried_rows = keep


def _merged_windows(
    predictor: EnsemblePredictor,
    path: Path,
    dataset,
    bands: list[int],
    windows: list[Window],
    raster: RasterInput | None,
) -> tuple[torch.Tensor, list[np.ndarray | None]]:
    """The (tiles, C, h, w) float32 CPU merged maps of ``windows`` of ``dataset``, predicted as one
    batch, and each window's validity (None: all valid)."""
    images, valids = [], []
    for window in windows:
        image, valid = read_raster_window(path, dataset, bands, window, raster)
        images.append(torch.from_numpy(computable(image)).permute(2, 0, 1))  # (bands, h, w)
        valids.append(valid)
    try:
        merged = predictor.merged(torch.stack(images))
    except PredictionError as error:
        window = windows[error.images[0]]
        raise PredictionError(
            f"{path}: window at row {window.row_off}, column {window.col_off} "
            f"({window.height} x {window.width}): {error}"
        ) from error
    return merged.float().cpu(), valids


def _columns_from(pending: list[tuple], column: int) -> list[tuple]:
    """The parts of ``pending`` merged tiles from ``column`` on; the merged maps are copied so that
    the batch they came from is freed."""
    kept = []
    for start, tile, tile_weight, tile_valid in pending:
        cut = column - start
        if cut < tile.shape[-1]:
            kept.append(
                (
                    column,
                    tile[:, :, cut:].clone(),
                    tile_weight[:, cut:],
                    None if tile_valid is None else tile_valid[:, cut:],
                )
            )
    return kept


def predict_scene(
    predictor: EnsemblePredictor,
    source: Path,
    output: Path,
    *,
    tile_size: int = SCENE_TILE_SIZE,
    overlap: int = 128,
    tiles_per_batch: int = SCENE_TILES_PER_BATCH,
    confidence_output: Path | None = None,
    confidence_bits: int = 8,
    palette: tuple | None = None,
    raster: RasterInput | None = None,
    progress: bool = False,
    settings: dict | None = None,
) -> None:
    """Predict the GeoTIFF ``source`` into the Cloud-Optimized GeoTIFF ``output``.

    ``output``: uint8 class ids with ``palette`` (default ``PALETTE``) as its colour map, the input's
    CRS and transform, 512 x 512 DEFLATE blocks and overviews (nearest). Where the input has a
    nodata value, mask or alpha, its invalid pixels are nodata 255 (no class). ``confidence_output``
    (optional): the merged map's top probability as round(confidence x (2**bits - 1)) in
    uint8/uint16, nodata 0 where the input is nodata. A window whose merged map holds NaN or inf
    stops it with a PredictionError naming the scene and the window. Each file is written under a
    hidden temporary name of its own (``temporary_name``) and renamed, the class map last: an
    interrupted run leaves no partial file, and runs writing the same scene at once never write
    into one file. Both carry the ``source_record`` of ``source`` and ``settings`` (the caller's
    record of the prediction settings) as their ``SOURCE_TAG`` metadata item, the mark of a
    finished map that ``scene_is_complete`` checks. A failed write (a full disk) is a WriteError naming
    ``output`` and the free space there. ``progress``: show a bar of the scene's tiles.
    """
    if confidence_bits not in (8, 16):
        raise ValueError(f"confidence_bits must be 8 or 16, got {confidence_bits}")
    source, output = Path(source), Path(output)
    levels, level_type = (255, "uint8") if confidence_bits == 8 else (65535, "uint16")
    palette = palette or PALETTE
    record = source_record(source, settings)  # before the read: see InputImages
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_raster(source) as dataset:
        raster_bands(source, dataset, raster)  # a raster that does not fit fails before any work
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
        existed = output.exists()
        classes_tmp = _pieces_name(output)
        confidence_tmp = None if confidence_output is None else _pieces_name(confidence_output)
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
                    for top, left, merged, valid in merged_scene(
                        predictor,
                        source,
                        dataset,
                        tile_size=tile_size,
                        overlap=overlap,
                        tiles_per_batch=tiles_per_batch,
                        raster=raster,
                        progress=progress,
                    ):
                        probs = merged if predictor.merge == "probs" else merged.softmax(dim=0)
                        top_prob, pred = probs.max(dim=0)
                        pred = pred.to(torch.uint8).numpy()
                        window = Window(left, top, pred.shape[1], pred.shape[0])
                        if valid is not None:
                            pred[~valid] = IGNORE_INDEX
                        classes.write(pred, 1, window=window)
                        if confidence is not None:
                            scaled = (top_prob * levels).round().numpy().astype(level_type)
                            if valid is not None:
                                scaled[~valid] = CONFIDENCE_NODATA
                            confidence.write(scaled, 1, window=window)
                    if confidence is not None:
                        confidence.update_tags(**{SOURCE_TAG: record})
                finally:
                    if confidence is not None:
                        confidence.close()
                classes.write_colormap(1, _colormap(palette))
                classes.update_tags(**{SOURCE_TAG: record})
            for tmp in (classes_tmp, confidence_tmp):
                if tmp is not None:
                    _check_written(tmp)
            if confidence_tmp is not None:
                _write_cog(confidence_tmp, confidence_output, "AVERAGE")
            _write_cog(classes_tmp, output, "NEAREST")
        except RASTER_WRITE_FAILURES as error:  # reading the scene fails as a DataError
            if isinstance(error, GeoSegError):
                raise
            raise write_error(output, error, "the map", existed) from error
        finally:
            for tmp in (classes_tmp, confidence_tmp):
                if tmp is not None:
                    tmp.unlink(missing_ok=True)


def _pieces_name(path: Path) -> Path:
    """A new hidden tiled GTiff of this process's own that the pieces are written to before the
    COG copy (``.<name>.pieces.*.tmp``: ``remove_stale_temporaries`` cleans one a killed run
    left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return temporary_name(path.with_name(f"{path.name}.pieces"))


def _colormap(palette: tuple) -> dict[int, tuple[int, int, int, int]]:
    if len(palette) > IGNORE_INDEX:
        raise DataError(f"a palette of {len(palette)} colours leaves no room for nodata 255")
    colours = {index: (*map(int, colour[:3]), 255) for index, colour in enumerate(palette)}
    colours[IGNORE_INDEX] = (0, 0, 0, 0)  # nodata: transparent
    return colours


def _write_cog(pieces: Path, output: Path, resampling: str) -> None:
    """Copy the tiled GTiff ``pieces`` to ``output`` as a Cloud-Optimized GeoTIFF (512 blocks,
    DEFLATE, overviews), through a temporary name and a rename. The COG driver keeps the colour
    map, nodata and georeferencing."""

    def copy(tmp: Path) -> None:
        rasterio.shutil.copy(
            os.fspath(pieces),
            os.fspath(tmp),
            driver="COG",
            compress="DEFLATE",
            overview_resampling=resampling,
            blocksize=BLOCK_SIZE,
            BIGTIFF="IF_SAFER",
        )
        _check_written(tmp)

    write_atomic(output, copy, what="the map", failures=RASTER_WRITE_FAILURES)


def _check_written(path: Path) -> None:
    """An OSError unless every block of the GeoTIFF at ``path`` lies within the file: GDAL's copy
    can meet a full disk, say so on stderr alone and return, leaving a truncated file."""
    size = path.stat().st_size
    with rasterio.open(path) as dataset:  # a truncated header fails here
        for band in dataset.indexes:
            for (row, column), _ in dataset.block_windows(band):
                offset, count = (
                    int(
                        dataset.get_tag_item(f"BLOCK_{item}_{column}_{row}", "TIFF", bidx=band) or 0
                    )
                    for item in ("OFFSET", "SIZE")
                )
                if not offset or offset + count > size:
                    raise OSError(
                        f"incomplete GeoTIFF: block {row},{column} of band {band} is missing "
                        f"from its {size} bytes"
                    )
