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

import contextlib
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
from geoseg.classes import IGNORE_INDEX
from geoseg.datasets.io import (
    computable,
    open_raster,
    raster_bands,
    raster_has_validity,
    read_raster_window,
)
from geoseg.errors import DataError, GeoSegError, PredictionError
from geoseg.files import temporary_name, write_atomic, write_error
from geoseg.inference.io import SOURCE_TAG
from geoseg.inference.job import CONFIDENCE_NODATA, PredictionJob
from geoseg.inference.tta import EnsemblePredictor
from geoseg.inference.windows import (
    SCENE_TILE_SIZE,
    SCENE_TILES_PER_BATCH,
    blend_window,
    check_overlap,
    tile_starts,
)

BLOCK_SIZE = 512
FINAL_ROWS = 64  # rows finalised and written at a time
# GDAL's block cache defaults to 5% of the RAM; writing and copying a scene needs a few blocks.
GDAL_CACHE_MB = 64
# what GDAL raises when a write fails (a full disk: "Write failed", "TIFFAppendToStrip")
RASTER_WRITE_FAILURES = (OSError, RasterioError, CPLE_BaseError)


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
    part that grows with the width).
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
    passes = _passes(tops, tile_h, overlap, height)
    carry = _CarriedRows(max(rows - done for _, rows, done in passes), width)
    with tqdm(total=len(tops) * len(lefts), unit="tile", leave=False, disable=not progress) as bar:
        for pass_tops, rows_in_pass, done in passes:
            top = pass_tops[0]
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
                total = torch.zeros(merged.shape[1], rows_in_pass, final - blended)
                weight_sum = torch.zeros(1, rows_in_pass, final - blended)
                valid = np.zeros((rows_in_pass, final - blended), bool) if masked else None
                carry.put_into(total, weight_sum, columns)
                # Tile rows in order, each left to right: the whole image's order of sums per pixel.
                for row_pending, tile_top in zip(pending, pass_tops, strict=True):
                    rows = slice(tile_top - top, tile_top - top + tile_h)
                    _blend(row_pending, rows, blended, final, total, weight_sum, valid)
                for first in range(0, done, FINAL_ROWS):
                    rows = slice(first, min(first + FINAL_ROWS, done))
                    piece = total[:, rows] / weight_sum[:, rows]
                    yield top + first, blended, piece, None if valid is None else valid[rows]
                carry.take_from(total, weight_sum, done, columns)
                blended = final
                for row_pending in pending:
                    row_pending[:] = _columns_from(row_pending, final)
                del merged, total, weight_sum, valid  # freed before the next batch is predicted
            carry.rows = rows_in_pass - done


def _passes(
    tops: list[int], tile_h: int, overlap: int, height: int
) -> list[tuple[list[int], int, int]]:
    """The tile rows predicted together (a pass), as (their tops, the rows they cover, the rows
    final once the pass is done). A pass is one tile row, or the last two where a last row pushed
    up against the bottom border overlaps the one above by more than ``overlap``: so no more than
    ``overlap`` rows are carried from one pass to the next."""
    groups: list[list[int]] = []
    for row, top in enumerate(tops):
        if groups and tops[row - 1] + tile_h - top > overlap:
            groups[-1].append(top)
        else:
            groups.append([top])
    passes = []
    for index, group in enumerate(groups):
        following = groups[index + 1][0] if index + 1 < len(groups) else height
        passes.append((group, group[-1] + tile_h - group[0], following - group[0]))
    return passes


class _CarriedRows:
    """The partial sums of the rows the next pass still blends into, over the whole width. A pass
    reads and then overwrites them column by column, so one buffer serves as carry-in and
    carry-out."""

    def __init__(self, most_rows: int, width: int):
        self.most_rows, self.width = most_rows, width
        self.total = self.weight_sum = None
        self.rows = 0  # rows carried into the current pass

    def put_into(self, total: torch.Tensor, weight_sum: torch.Tensor, columns: slice) -> None:
        if self.rows:
            total[:, : self.rows] = self.total[:, : self.rows, columns]
            weight_sum[:, : self.rows] = self.weight_sum[:, : self.rows, columns]

    def take_from(
        self, total: torch.Tensor, weight_sum: torch.Tensor, done: int, columns: slice
    ) -> None:
        keep = total.shape[1] - done
        if not keep:
            return
        if self.total is None:
            self.total = torch.zeros(total.shape[0], self.most_rows, self.width)
            self.weight_sum = torch.zeros(1, self.most_rows, self.width)
        self.total[:, :keep, columns] = total[:, done:]
        self.weight_sum[:, :keep, columns] = weight_sum[:, done:]


def _blend(
    row_pending: list[tuple],
    rows: slice,
    blended: int,
    final: int,
    total: torch.Tensor,
    weight_sum: torch.Tensor,
    valid: np.ndarray | None,
) -> None:
    """Add the columns ``blended:final`` of one tile row's pending merged tiles, left to right,
    into ``rows`` of ``total`` and ``weight_sum`` (whose column 0 is ``blended``)."""
    for start, tile, tile_weight, tile_valid in row_pending:
        count = min(start + tile.shape[-1], final) - start
        into = slice(start - blended, start - blended + count)
        total[:, rows, into] += tile_weight[:, :count] * tile[:, :, :count]
        weight_sum[:, rows, into] += tile_weight[:, :count]
        if valid is not None:
            valid[rows, into] = tile_valid[:, :count]


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
    predictor: EnsemblePredictor, source: Path, job: PredictionJob, progress: bool = False
) -> None:
    """Predict the GeoTIFF ``source`` into the Cloud-Optimized GeoTIFFs of ``job.outputs(source)``.

    The class map: uint8 class ids with the job's palette as its colour map, the input's CRS and
    transform, 512 x 512 DEFLATE blocks and overviews (nearest). Where the input has a nodata
    value, mask or alpha, its invalid pixels are nodata 255 (no class), and 0 in the confidence
    map (uint8/uint16, overviews averaged). A window whose merged map holds NaN or inf stops it
    with a PredictionError naming the scene and the window. Each file is written under a hidden
    temporary name of its own (``temporary_name``) and renamed, the class map last: an
    interrupted run leaves no partial file, and runs writing the same scene at once never write
    into one file. Both carry the job's record of ``source`` as their ``SOURCE_TAG`` metadata
    item, the mark of a finished map that ``scene_is_complete`` checks. A failed write (a full
    disk) is a WriteError naming the map and the free space there. ``progress``: show a bar of
    the scene's tiles.
    """
    source = Path(source)
    *confidence, output = job.outputs(source)
    confidence_output = confidence[0] if confidence else None
    record = job.record(source)  # before the read: see InputImages
    with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB), open_raster(source) as dataset:
        raster_bands(source, dataset, job.raster)  # a raster that does not fit fails before work
        existed = output.exists()
        classes_tmp = _pieces_name(output)
        confidence_tmp = None if confidence_output is None else _pieces_name(confidence_output)
        try:
            _write_pieces(
                predictor, source, dataset, job, (classes_tmp, confidence_tmp), record, progress
            )
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


def _write_pieces(
    predictor: EnsemblePredictor,
    source: Path,
    dataset,
    job: PredictionJob,
    paths: tuple[Path, Path | None],
    record: str,
    progress: bool,
) -> None:
    """Write the class ids and the confidence (where its path is not None) of the scene
    ``dataset`` into tiled GTiffs on its grid at ``paths``, piece by piece as ``merged_scene``
    yields them, then ``record`` as their ``SOURCE_TAG``: the pieces are then whole."""
    classes_path, confidence_path = paths
    masked = raster_has_validity(dataset)
    grid = {
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
    with contextlib.ExitStack() as files:
        classes = files.enter_context(
            rasterio.open(
                classes_path, "w", **grid, dtype="uint8", nodata=IGNORE_INDEX if masked else None
            )
        )
        confidence = None
        if confidence_path is not None:
            nodata = CONFIDENCE_NODATA if masked else None
            dtype = np.dtype(job.confidence_dtype).name
            confidence = files.enter_context(
                rasterio.open(confidence_path, "w", **grid, dtype=dtype, nodata=nodata)
            )
        for top, left, merged, valid in merged_scene(
            predictor,
            source,
            dataset,
            tile_size=job.scene_tile_size,
            overlap=job.overlap,
            tiles_per_batch=job.tiles_per_batch,
            raster=job.raster,
            progress=progress,
        ):
            ids, levels = job.stored_maps(*predictor.decide(merged), valid)
            window = Window(left, top, ids.shape[1], ids.shape[0])
            classes.write(ids, 1, window=window)
            if confidence is not None:
                confidence.write(levels, 1, window=window)
        classes.write_colormap(1, class_colormap(job.colours))
        for written in (classes, confidence):
            if written is not None:
                written.update_tags(**{SOURCE_TAG: record})


def _pieces_name(path: Path) -> Path:
    """A new hidden tiled GTiff of this process's own that the pieces are written to before the
    COG copy (``.<name>.pieces.*.tmp``: ``remove_stale_temporaries`` cleans one a killed run
    left)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return temporary_name(path.with_name(f"{path.name}.pieces"))


def class_colormap(palette: tuple) -> dict[int, tuple[int, int, int, int]]:
    """A GeoTIFF colour map of class ids: ``palette``'s colours, ignore (255) transparent."""
    if len(palette) > IGNORE_INDEX:
        raise DataError(f"a palette of {len(palette)} colours leaves no room for nodata 255")
    colours = {index: (*map(int, colour[:3]), 255) for index, colour in enumerate(palette)}
    colours[IGNORE_INDEX] = (0, 0, 0, 0)  # nodata: transparent
    return colours


def _write_cog(pieces: Path, output: Path, resampling: str) -> None:
    """Copy the tiled GTiff ``pieces`` to ``output`` as a Cloud-Optimized GeoTIFF (512 blocks,
    DEFLATE, overviews), through a temporary name and a rename. The COG driver keeps the colour
    map, nodata, georeferencing and metadata."""

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
