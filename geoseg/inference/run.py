"""Predicting a folder of images with an EnsemblePredictor: decode, predict, write, in a pipeline."""

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from geoseg.bands import RasterInput
from geoseg.classes import IGNORE_INDEX, PALETTE
from geoseg.errors import DataError, PredictionError, preview
from geoseg.files import remove_stale_temporaries
from geoseg.inference.io import (
    BackgroundWriter,
    InputImages,
    output_paths,
    source_record,
    write_prediction,
)
from geoseg.inference.tta import EnsemblePredictor


def predict_folder(
    predictor: EnsemblePredictor,
    inputs: list[Path],
    output_dir: Path,
    *,
    batch_size: int = 1,
    num_workers: int = 2,
    tile_size: int | None = None,
    overlap: int = 0,
    save_rgb: bool = False,
    save_confidence: bool = False,
    confidence_bits: int = 8,
    palette: tuple | None = None,
    raster: RasterInput | None = None,
    leftovers_of: list[Path] | None = None,
    settings: dict | None = None,
) -> None:
    """Write ``<output_dir>/<stem>.png`` (and rgb/ in ``palette``, confidence/) for every input.

    The confidence (the merged map's top probability) is stored as an 8- or 16-bit PNG of
    ``round(confidence x (2**confidence_bits - 1))``. ``raster``: the bands the networks read
    (None: 8-bit RGB); pixels a raster marks as nodata are 255 in the map and 0 in the
    confidence. Images are decoded in ``num_workers`` processes and written in a background
    thread while the next batch is predicted; ``batch_size`` images of the same size share a
    forward pass. An image whose merged map holds NaN or inf stops the run with a
    PredictionError naming it; its maps are not written. Every map carries the
    ``source_record`` of its input and ``settings`` (the caller's record of the prediction
    settings), which ``pending_inputs`` checks. Temporary files that interrupted runs left for
    ``leftovers_of`` (default: ``inputs``; a resumed run passes every input it owns, finished ones
    included) are deleted; those of runs still writing into the folder are not.
    """
    if confidence_bits not in (8, 16):
        raise ValueError(f"confidence_bits must be 8 or 16, got {confidence_bits}")
    levels, level_type = (255, np.uint8) if confidence_bits == 8 else (65535, np.uint16)
    for path in output_paths(output_dir, "any", save_rgb, save_confidence):
        path.parent.mkdir(parents=True, exist_ok=True)
        owned = inputs if leftovers_of is None else leftovers_of
        remove_stale_temporaries(path.parent, [source.stem for source in owned])
    loader = DataLoader(
        InputImages(inputs, raster), batch_size=batch_size, num_workers=num_workers, collate_fn=list
    )
    with BackgroundWriter() as writer, tqdm(total=len(inputs), unit="img") as progress:
        for items in loader:
            by_size: dict[tuple[int, int], list[dict]] = {}
            for item in items:
                if item["error"]:
                    raise DataError(item["error"])
                by_size.setdefault(tuple(item["image"].shape[1:]), []).append(item)
            for group in by_size.values():
                images = torch.stack([item["image"] for item in group])
                try:
                    pred, confidence = predictor.predict(images, tile_size, overlap)
                except PredictionError as error:
                    paths = [str(group[index]["path"]) for index in error.images]
                    raise PredictionError(f"{preview(paths, limit=3)}: {error}") from error
                pred = pred.to(torch.uint8).cpu().numpy()
                confidence = (confidence * levels).round().cpu().numpy().astype(level_type)
                for index, item in enumerate(group):
                    if item["valid"] is not None:
                        nodata = ~item["valid"].numpy()
                        pred[index][nodata] = IGNORE_INDEX
                        confidence[index][nodata] = 0
                    writer.submit(
                        write_prediction,
                        output_dir,
                        item["stem"],
                        pred[index],
                        confidence[index] if save_confidence else None,
                        (palette or PALETTE) if save_rgb else None,
                        source_record(item["path"], settings, item["fingerprint"]),
                    )
                progress.update(len(group))
