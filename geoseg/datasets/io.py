"""Reading images and masks from disk, with errors that name the file and what was expected."""

import os
from pathlib import Path

import cv2
import numpy as np

from geoseg.errors import DataError
from geoseg.files import write_atomic

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")

# Our own data loaders parallelise over processes; OpenCV's thread pool inside each only competes.
cv2.setNumThreads(0)
# GeoTIFFs (OpenEarthMap) carry tags OpenCV does not know; its warning per file is noise.
cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _imread(path: Path) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error})") from error
    if data.size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")
    # Some OpenCV builds decode a truncated JPEG without an error, filling the rest with grey.
    if data[:2].tobytes() == b"\xff\xd8" and b"\xff\xd9" not in data[-4096:].tobytes():
        raise DataError(
            f"{path}: truncated JPEG (no end-of-image marker); copy or export the file again"
        )
    array = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{path}: unreadable or corrupt image file")
    return array


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8.

    Grey images are repeated to three channels and an alpha channel is dropped; anything that is
    not 8-bit is an error, since the normalisation statistics are on the 0-255 scale.
    """
    path = Path(path)
    array = _imread(path)
    if array.dtype != np.uint8:
        raise DataError(
            f"{path}: image dtype is {array.dtype}; expected 8-bit (uint8) RGB. "
            "Rescale it to 0-255 before training or inference."
        )
    if array.ndim == 2:
        return np.repeat(array[:, :, None], 3, axis=2)
    channels = array.shape[2]
    if channels == 1:
        return np.repeat(array, 3, axis=2)
    if channels == 3:
        return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)
    if channels == 4:
        return cv2.cvtColor(array, cv2.COLOR_BGRA2RGB)
    raise DataError(
        f"{path}: image has {channels} channels; expected 1 (grey), 3 (RGB) or 4 (RGBA)"
    )


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """Read a single-channel mask of class ids as (H, W) uint8."""
    path = Path(path)
    array = _imread(path)
    if array.ndim == 3:
        if array.shape[2] == 1:
            array = array[:, :, 0]
        else:
            raise DataError(
                f"{path}: mask has {array.shape[2]} channels; expected one channel of class ids. "
                "It looks like a colour-coded (RGB) mask: convert it to ids with the palette in "
                "geoseg/classes.py."
            )
    if array.dtype != np.uint8:
        raise DataError(f"{path}: mask dtype is {array.dtype}; expected uint8 class ids")
    return array


def list_files(folder: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> dict[str, Path]:
    """Map file stem -> path for the image files directly inside ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in extensions or not path.is_file():
            continue
        if path.stem in files:
            raise DataError(
                f"{folder}: two files share the stem '{path.stem}': {files[path.stem].name}, {path.name}"
            )
        files[path.stem] = path
    return files


def write_png_atomic(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write a PNG through a temporary name and a rename, so a crash never leaves a truncated file."""
    path = Path(path)
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: could not encode the PNG")
    write_atomic(path, lambda tmp: tmp.write_bytes(encoded.tobytes()))
