"""Reading inference inputs in DataLoader workers and writing predictions in the background."""

import glob
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
    scan_folder,
    write_png_atomic,
)
from geoseg.errors import DataError

log = logging.getLogger(__name__)

RGB_DIR, CONFIDENCE_DIR = "rgb", "confidence"


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

    A file that cannot be read yields an ``error`` message instead of an image, so the main
    process can stop with that message rather than a worker traceback.
    """

    def __init__(self, paths: list[Path], raster: RasterInput | None = None):
        self.paths = paths
        self.raster = raster

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict:
        path = self.paths[index]
        try:
            image, valid = read_image_and_valid(path, self.raster)
        except DataError as error:
            return {
                "path": path,
                "stem": path.stem,
                "image": None,
                "valid": None,
                "error": str(error),
            }
        return {
            "path": path,
            "stem": path.stem,
            "image": torch.from_numpy(computable(image)).permute(2, 0, 1).contiguous(),
            "valid": None if valid is None else torch.from_numpy(valid),
            "error": None,
        }


def output_paths(output_dir: Path, stem: str, save_rgb: bool, save_confidence: bool) -> list[Path]:
    """Every file written for one input; the class-id mask comes last, so its presence means done."""
    paths = []
    if save_rgb:
        paths.append(output_dir / RGB_DIR / f"{stem}.png")
    if save_confidence:
        paths.append(output_dir / CONFIDENCE_DIR / f"{stem}.png")
    return [*paths, output_dir / f"{stem}.png"]


def remove_stale_temporaries(folder: Path, inputs: list[Path]) -> int:
    """Delete the hidden ``.<stem>.*.tmp`` files an interrupted run left in ``folder`` for these
    ``inputs``; their count. Other inputs' temporaries are left alone: under several processes
    they are another process's writes in progress."""
    stale = []
    if folder.is_dir():
        for path in inputs:
            stale += folder.glob(f".{glob.escape(path.stem)}.*tmp")
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)


def write_prediction(
    output_dir: Path,
    stem: str,
    pred: np.ndarray,
    confidence: np.ndarray | None,
    palette: tuple | None,
) -> None:
    """Write ``<stem>.png`` (uint8 class ids) and optionally rgb/ (in ``palette``) and confidence/
    beside it."""
    if palette is not None:
        write_png_atomic(output_dir / RGB_DIR / f"{stem}.png", colorize_mask(pred, palette))
    if confidence is not None:
        write_png_atomic(output_dir / CONFIDENCE_DIR / f"{stem}.png", confidence)
    write_png_atomic(output_dir / f"{stem}.png", pred)


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


def pending_inputs(
    inputs: list[Path], output_dir: Path, save_rgb: bool, save_confidence: bool
) -> list[Path]:
    """The inputs whose outputs are not all written yet (resuming an interrupted run)."""
    return [
        path
        for path in inputs
        if not all(
            p.is_file() for p in output_paths(output_dir, path.stem, save_rgb, save_confidence)
        )
    ]
