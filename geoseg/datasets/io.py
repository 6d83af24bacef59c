"""Reading images and masks from disk, with errors that name the file and what was expected."""

import logging
import math
import os
import struct
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError

from geoseg.bands import RasterInput
from geoseg.errors import DataError, preview
from geoseg.files import write_atomic

# Metres per degree of latitude (a degree of longitude is this times the cosine of the latitude):
# the spherical approximation, within 0.5% of the ellipsoid's at any latitude.
METRES_PER_DEGREE = 111_320.0
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
# Decoded with OpenCV; every other file (GeoTIFF and the rest GDAL reads) with rasterio.
OPENCV_EXTENSIONS = (".png", ".jpg", ".jpeg")

# Our own data loaders parallelise over processes; OpenCV's thread pool inside each only competes.
cv2.setNumThreads(0)
# GDAL's warnings (unknown tags, odd extra samples) are noise here: whatever makes a raster
# unusable is raised as an error and reported with the file's name.
logging.getLogger("rasterio._env").setLevel(logging.ERROR)


def is_raster(path: Path) -> bool:
    """Whether ``path`` is read with rasterio (any GDAL format but PNG/JPEG), so may hold nodata."""
    return path.suffix.lower() not in OPENCV_EXTENSIONS


def _check_file(path: Path) -> None:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes)")


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


def open_raster(path: Path):
    """``path`` opened with rasterio; a missing, empty or unreadable file is a DataError."""
    _check_file(path)
    try:
        with warnings.catch_warnings():  # tiles need no georeferencing
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            return rasterio.open(path)
    except RasterioError as error:
        raise DataError(f"{path}: unreadable or corrupt image file ({error})") from error


def _read_bands(path: Path, dataset, indexes, window=None) -> np.ndarray:
    try:
        return dataset.read(indexes, window=window)
    except RasterioError as error:
        raise DataError(f"{path}: unreadable or corrupt image file ({error})") from error


def _band_names(dataset) -> str:
    return ", ".join(interp.name for interp in dataset.colorinterp)


def raster_bands(path: Path, dataset, raster: RasterInput | None = None) -> list[int]:
    """The bands of ``dataset`` that hold the image, after checking its layout and dtype.

    With ``raster`` (a network's contract): its bands, once the raster's band count and dtype are
    checked against it. Without: 1 band (grey or colour table) or red, green, blue of uint8 RGB
    (a 4th band must be alpha: the validity mask). A raster that does not fit is a DataError
    naming ``path``, what it holds and what is expected.
    """
    count, interps = dataset.count, dataset.colorinterp
    if raster is not None:
        dtype = dataset.dtypes[0]
        if count != raster.count or dtype != raster.dtype:
            raise DataError(
                f"{path}: raster has {count} {dtype} bands ({_band_names(dataset)}); the model "
                f"reads {raster.describe()}"
            )
        return list(raster.bands)
    if count == 1 or count == 3 or (count == 4 and interps[3] == ColorInterp.alpha):
        bands = [1] if count == 1 else [1, 2, 3]
    else:
        raise DataError(
            f"{path}: raster has {count} bands ({_band_names(dataset)}); an RGB model reads "
            "3-band RGB (or 1-band grey, or RGB + alpha). For extra bands such as near-infrared, "
            "train a model that reads them (a RasterInput in the network's config)."
        )
    dtype = next((dataset.dtypes[b - 1] for b in bands if dataset.dtypes[b - 1] != "uint8"), None)
    if dtype is not None:
        raise DataError(
            f"{path}: image dtype is {dtype}; expected 8-bit (uint8) RGB for an RGB model. "
            "Rescale it to 0-255, or train a model that reads it (a RasterInput with its dtype "
            "and scaling)."
        )
    return bands


def raster_has_validity(dataset) -> bool:
    """Whether ``dataset`` declares a nodata value, a mask band or alpha (pixels may be invalid)."""
    return not all(MaskFlags.all_valid in flags for flags in dataset.mask_flag_enums)


def read_raster_window(
    path: Path, dataset, bands: list[int], window=None, raster: RasterInput | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """``bands`` (from ``raster_bands``) of ``dataset`` inside ``window`` (a rasterio Window; None:
    all of it) as (H, W, 3) uint8 RGB, or with ``raster`` as (H, W, bands) in the raster's dtype;
    and where it holds data as (H, W) bool (None: all valid)."""
    array = _read_bands(path, dataset, bands, window)
    if raster is not None:
        image = np.ascontiguousarray(array.transpose(1, 2, 0))
    elif len(bands) == 1 and dataset.colorinterp[0] == ColorInterp.palette:
        lut = np.zeros((256, 3), np.uint8)
        for index, colour in dataset.colormap(1).items():
            lut[index] = colour[:3]
        image = lut[array[0]]
    elif len(bands) == 1:
        image = np.repeat(array[0][:, :, None], 3, axis=2)
    else:
        image = np.ascontiguousarray(array.transpose(1, 2, 0))
    valid = None
    if raster_has_validity(dataset):
        try:
            valid = dataset.dataset_mask(window=window) != 0
        except RasterioError as error:
            raise DataError(f"{path}: unreadable or corrupt image file ({error})") from error
    if raster is not None:
        # Nodata values (NaN, -9999, -3.4e38) would spread through the network's convolutions
        # and attention into the valid pixels around them: they enter it as 0.
        invalid = None if valid is None else ~valid
        if image.dtype.kind == "f":
            finite = np.isfinite(image).all(axis=2)
            invalid = ~finite if invalid is None else invalid | ~finite
        if invalid is not None and invalid.any():
            image[invalid] = 0
    return image, valid


def computable(image: np.ndarray) -> np.ndarray:
    """``image`` as uint8 if it is, else float32: the types torch computes on and albumentations
    augments (16-bit and other band values are exact in float32 up to 2**24)."""
    return image if image.dtype == np.uint8 else image.astype(np.float32)


def _read_raster_image(
    path: Path, raster: RasterInput | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    with open_raster(path) as dataset:
        bands = raster_bands(path, dataset, raster)
        return read_raster_window(path, dataset, bands, raster=raster)


def read_image_and_valid(
    path: str | os.PathLike, raster: RasterInput | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read an image as (H, W, C), and where its pixels hold data as (H, W) bool.

    With ``raster`` (a network's contract), any file GDAL reads (GeoTIFF, PNG, ...) is read with
    rasterio: the contract's bands in its dtype, after checking the file's band count and dtype.
    Without, an RGB image as (H, W, 3) uint8: PNG and JPEG are decoded as ``read_image``
    describes, with ``valid`` None (an alpha channel is dropped, not read as a mask). GeoTIFFs and
    other rasters are read with rasterio: 1 band is grey (repeated to three) or a colour table
    (expanded), 3 bands are red, green, blue in band order whatever the interleave or photometric
    tag, and 4 bands whose 4th is alpha are RGB plus alpha. Any other band layout (2 bands, RGB +
    near-infrared, 5 or more) is an error naming the file, as is anything that is not 8-bit.
    ``valid`` is False where the raster's nodata value, mask band or alpha (0) says there is no
    data, and None when it declares none of them.
    """
    path = Path(path)
    if raster is not None or is_raster(path):
        return _read_raster_image(path, raster)
    return read_image(path), None


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an RGB image as (H, W, 3) uint8.

    Grey images are repeated to three channels and an alpha channel is dropped; anything that is
    not 8-bit is an error, since the normalisation statistics are on the 0-255 scale. GeoTIFFs and
    other rasters follow ``read_image_and_valid``'s band rules, without the validity mask.
    """
    path = Path(path)
    if is_raster(path):
        return _read_raster_image(path)[0]
    array = _imread(path)
    if array.dtype != np.uint8:
        raise DataError(
            f"{path}: image dtype is {array.dtype}; expected 8-bit (uint8) RGB for an RGB model. "
            "Rescale it to 0-255, or train a model that reads it (a RasterInput with its dtype "
            "and scaling)."
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
    """Read a single-channel mask of class ids as (H, W) uint8 (GeoTIFFs: one uint8 band)."""
    path = Path(path)
    if is_raster(path):
        return _read_raster_mask(path)
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


def _read_raster_mask(path: Path) -> np.ndarray:
    with open_raster(path) as dataset:
        if dataset.count != 1:
            raise DataError(
                f"{path}: mask has {dataset.count} bands ({_band_names(dataset)}); expected one "
                "band of class ids. It looks like a colour-coded (RGB) mask: convert it to ids "
                "with the palette in geoseg/classes.py."
            )
        if dataset.dtypes[0] != "uint8":
            raise DataError(f"{path}: mask dtype is {dataset.dtypes[0]}; expected uint8 class ids")
        return _read_bands(path, dataset, 1)


@dataclass(frozen=True)
class PixelSize:
    """The ground size of a raster's pixels in metres: ``x`` a pixel's width (along a row), ``y``
    its height (along a column); ``from_degrees``: converted from a geographic CRS (degrees) at
    the raster's centre latitude."""

    x: float
    y: float
    from_degrees: bool = False

    @property
    def gsd(self) -> float:
        """The ground sampling distance: the side of a square pixel of the same area (metres)."""
        return math.sqrt(self.x * self.y)


def pixel_size(path: str | os.PathLike) -> PixelSize | None:
    """The ground size of the pixels of the raster at ``path``, from its transform and CRS.

    Projected CRS: the transform's pixel size in the CRS's linear unit, converted to metres.
    Geographic CRS (degrees): converted at the raster's centre latitude, ``METRES_PER_DEGREE`` per
    degree of latitude and that times ``cos(latitude)`` per degree of longitude. None when the
    raster carries no georeference (PNG or JPEG without a world file, a TIFF without transform:
    rasterio reports no CRS and an identity transform) or a CRS without a known ground unit. A
    missing or unreadable file is a DataError naming it.
    """
    path = Path(path)
    with open_raster(path) as dataset:
        transform, crs = dataset.transform, dataset.crs
        width, height = dataset.width, dataset.height
    if crs is None or transform.is_identity:
        return None
    if crs.is_geographic:
        latitude = transform.d * width / 2 + transform.e * height / 2 + transform.f
        if not -90.0 <= latitude <= 90.0:
            raise DataError(
                f"{path}: geographic CRS {crs} but the raster's centre lies at latitude "
                f"{latitude:g}; expected -90..90 degrees"
            )
        per_lon, per_lat = METRES_PER_DEGREE * math.cos(math.radians(latitude)), METRES_PER_DEGREE
    elif crs.is_projected:
        try:
            per_lon = per_lat = crs.linear_units_factor[1]
        except CRSError:
            return None
    else:
        return None
    # The columns and rows of a rotated raster run along (a, d) and (b, e), not the axes.
    x = math.hypot(transform.a * per_lon, transform.d * per_lat)
    y = math.hypot(transform.b * per_lon, transform.e * per_lat)
    return PixelSize(x, y, from_degrees=bool(crs.is_geographic))


def ground_sampling_distance(path: str | os.PathLike) -> float | None:
    """The ground sampling distance of the raster at ``path`` in metres (``pixel_size(path).gsd``),
    or None when it carries no georeference."""
    size = pixel_size(path)
    return None if size is None else size.gsd


DANGLING_LINK = "dangling link"


@dataclass(frozen=True)
class FolderListing:
    """The image files directly inside ``folder`` and what else is there, not read: ``skipped``
    maps a name to why (``DANGLING_LINK``, "not an image", "a folder"). Hidden entries (``.*``:
    temporary files of an interrupted write, system files) are neither."""

    folder: Path
    files: dict[str, Path]  # stem -> path
    skipped: dict[str, str]

    @property
    def dangling(self) -> list[str]:
        """The names of image links whose target does not exist."""
        return [name for name, why in self.skipped.items() if why == DANGLING_LINK]


def describe_skipped(skipped: dict[str, str], limit: int = 5) -> str:
    """``"skipped 2 files: a.png (dangling link), notes.txt (not an image)"`` for ``skipped``
    (name -> why, as ``FolderListing.skipped``), or ``""`` for none."""
    if not skipped:
        return ""
    named = [f"{name} ({why})" for name, why in skipped.items()]
    return f"skipped {len(named)} file{'s' if len(named) > 1 else ''}: {preview(named, limit)}"


def scan_folder(folder: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> FolderListing:
    """The image files (by extension) directly inside ``folder``, and the entries skipped."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: folder not found")
    files: dict[str, Path] = {}
    skipped: dict[str, str] = {}
    for path in sorted(folder.iterdir()):
        if path.name.startswith("."):
            continue
        if path.is_dir():
            skipped[path.name] = "a folder"
        elif path.suffix.lower() not in extensions:
            skipped[path.name] = "not an image"
        elif not path.is_file():
            skipped[path.name] = DANGLING_LINK if path.is_symlink() else "not a file"
        elif path.stem in files:
            raise DataError(
                f"{folder}: two files share the stem '{path.stem}': {files[path.stem].name}, {path.name}"
            )
        else:
            files[path.stem] = path
    return FolderListing(folder, files, skipped)


def list_files(folder: str | os.PathLike, extensions=IMAGE_EXTENSIONS) -> dict[str, Path]:
    """Map file stem -> path for the image files directly inside ``folder``.

    An image whose link points nowhere is a DataError naming it: a pair or a tile is never
    dropped unnoticed. Other files and folders are not read (``scan_folder`` names them).
    """
    listing = scan_folder(folder, extensions)
    if listing.dangling:
        links = [f"{name} -> {os.readlink(listing.folder / name)}" for name in listing.dangling]
        raise DataError(
            f"{listing.folder}: {len(links)} image link{'s' if len(links) > 1 else ''} to a missing "
            f"file: {preview(links, limit=5)}; restore the target (mounted storage?) or remove "
            "the link"
        )
    return listing.files


def write_png_atomic(
    path: str | os.PathLike, array: np.ndarray, text: dict[str, str] | None = None
) -> None:
    """Write a PNG through a temporary name and a rename, so a crash never leaves a truncated file.
    ``text``: keyword -> value entries stored in the file as tEXt chunks (Latin-1), which
    ``read_png_text`` reads back and image readers ignore."""
    path = Path(path)
    bgr = cv2.cvtColor(array, cv2.COLOR_RGB2BGR) if array.ndim == 3 else array
    ok, encoded = cv2.imencode(".png", bgr)
    if not ok:
        raise OSError(f"{path}: could not encode the PNG")
    data = encoded.tobytes()
    if text:
        chunks = b"".join(
            _png_chunk(b"tEXt", key.encode("latin-1") + b"\0" + value.encode("latin-1"))
            for key, value in text.items()
        )
        data = data[: -len(_PNG_END)] + chunks + data[-len(_PNG_END) :]  # before IEND
    write_atomic(path, lambda tmp: tmp.write_bytes(data))


def read_png_text(path: str | os.PathLike) -> dict[str, str] | None:
    """The tEXt entries of the PNG ``path`` (keyword -> value), or None unless it is a whole PNG:
    its signature, every chunk with a matching checksum, and the end chunk (IEND) its last bytes.
    A file cut short or damaged gives None, at the cost of one read and one CRC pass."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return None
    if not data.startswith(_PNG_SIGNATURE):
        return None
    text: dict[str, str] = {}
    at = len(_PNG_SIGNATURE)
    while at + 12 <= len(data):
        length, kind = struct.unpack(">I4s", data[at : at + 8])
        end = at + 12 + length
        if end > len(data):
            return None
        body = data[at + 8 : end - 4]
        if zlib.crc32(kind + body) != struct.unpack(">I", data[end - 4 : end])[0]:
            return None
        if kind == b"tEXt":
            key, _, value = body.partition(b"\0")
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif kind == b"IEND":
            return text if end == len(data) else None
        at = end
    return None


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


_PNG_END = _png_chunk(b"IEND", b"")
