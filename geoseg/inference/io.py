"""Reading inference inputs in DataLoader workers and writing predictions in the background."""

import json
import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from geoseg.bands import RasterInput
from geoseg.classes import colorize_mask
from geoseg.datasets.io import (
    computable,
    describe_skipped,
    read_image_and_valid,
    read_png_text,
    scan_folder,
    write_png_atomic,
)
from geoseg.errors import DataError
from geoseg.files import file_fingerprint

log = logging.getLogger(__name__)

RGB_DIR, CONFIDENCE_DIR = "rgb", "confidence"
# Every finished output carries, under this key (a PNG tEXt chunk, a GeoTIFF metadata item), the
# record of what it was computed from: ``source_record``.
SOURCE_TAG = "GEOSEG_SOURCE"


def find_inputs(input_dir: str | os.PathLike) -> list[Path]:
    """The images (png, jpg, tif) directly inside ``input_dir``, sorted by name.

    What is there but not predicted (links to missing files, other files, folders) is logged as a
    warning that counts and names it.
    """
    listing = scan_folder(input_dir)
    skipped = describe_skipped(listing.skipped)
    if not listing.files:
        raise DataError(
            f"{input_dir}: no input images (.png, .jpg, .tif) found"
            + (f"; {skipped}" if skipped else "")
        )
    if skipped:
        log.warning("%s: %s", input_dir, skipped)
    return list(listing.files.values())


class InputImages(Dataset):
    """Input images as (3, H, W) uint8 RGB tensors (grey repeated, alpha dropped), or with a
    ``raster`` (the networks' bands) as (bands, H, W) float32 raw values; ``valid``: (H, W) bool
    where a raster holds data (None: all of it).

    Each item also holds the input's ``fingerprint`` (``file_fingerprint``, taken before the
    read). A file that cannot be read yields an ``error`` message instead of an image, so the main
    process can stop with that message rather than a worker traceback.
    """

    def __init__(self, paths: list[Path], raster: RasterInput | None = None):
        self.paths = paths
        self.raster = raster

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        error = None
        try:
            # before the read: a file replaced meanwhile leaves an outdated record, never a new one
            fingerprint = file_fingerprint(path)
            image, valid = read_image_and_valid(path, self.raster)
        except DataError as failure:
            error = str(failure)
        except OSError as failure:
            error = f"{path}: cannot be read ({failure})"
        if error is not None:
            return {
                "path": path,
                "stem": path.stem,
                "image": None,
                "valid": None,
                "fingerprint": None,
                "error": error,
            }
        return {
            "path": path,
            "stem": path.stem,
            "image": torch.from_numpy(computable(image)).permute(2, 0, 1).contiguous(),
            "valid": None if valid is None else torch.from_numpy(valid),
            "fingerprint": fingerprint,
            "error": None,
        }


def source_record(source: Path, settings: dict | None, fingerprint: dict | None = None) -> str:
    """What an output of ``source`` is computed from, as the JSON stored in it (``SOURCE_TAG``):
    the input's name and ``file_fingerprint`` (``fingerprint``, taken before the input was read;
    None: now), and the caller's prediction ``settings`` (JSON-able).

    Resuming compares it with the record of the input as it is now: an output whose record
    differs or is missing (cut short, left by a lost race, written by a version of this code
    without records, or computed from an input since replaced under its name or with other
    settings) is computed again. Written inside the output, the record travels with it and needs
    no shared file that processes writing one folder at once would have to update together. An
    input that cannot be read is a DataError naming it.
    """
    if fingerprint is None:
        try:
            fingerprint = file_fingerprint(source)
        except OSError as error:
            raise DataError(f"{source}: cannot be read ({error})") from error
    record = {"source": {"name": source.name, **fingerprint}, "settings": settings}
    return json.dumps(record, sort_keys=True)


def write_prediction(
    output_dir: Path,
    stem: str,
    pred: np.ndarray,
    confidence: np.ndarray | None,
    palette: tuple | None,
    record: str | None = None,
) -> None:
    """Write ``<stem>.png`` (uint8 class ids) and optionally rgb/ (in ``palette``) and confidence/
    beside it, the class ids last; each carries ``record`` (``source_record``) if given."""
    text = None if record is None else {SOURCE_TAG: record}
    if palette is not None:
        write_png_atomic(output_dir / RGB_DIR / f"{stem}.png", colorize_mask(pred, palette), text)
    if confidence is not None:
        write_png_atomic(output_dir / CONFIDENCE_DIR / f"{stem}.png", confidence, text)
    write_png_atomic(output_dir / f"{stem}.png", pred, text)


class BackgroundWriter:
    """Runs writes in a worker thread, at most ``max_pending`` queued; errors surface on the next
    submit or at exit. PNG encoding releases the GIL, so writing overlaps the next forward pass."""

    def __init__(self, max_pending: int = 8):
        self.pool = ThreadPoolExecutor(max_workers=1)
        self.pending: list[Future] = []
        self.max_pending = max_pending

    def submit(self, fn, *args) -> None:
        self.pending.append(self.pool.submit(fn, *args))
        while len(self.pending) > self.max_pending:
            self.pending.pop(0).result()

    def __enter__(self) -> "BackgroundWriter":
        return self

    def __exit__(self, *exc_info) -> None:
        try:
            for future in self.pending:
                future.result()
        finally:
            self.pool.shutdown(wait=True)


def png_is_complete(path: Path, record: str) -> bool:
    """Whether the PNG ``path`` is whole and carries ``record`` (see ``source_record``)."""
    text = read_png_text(path)
    return text is not None and text.get(SOURCE_TAG) == record
