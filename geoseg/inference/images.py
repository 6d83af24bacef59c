"""Predicting PNG/JPEG tiles with an EnsemblePredictor: decode, predict, write, in a pipeline."""

from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from geoseg.errors import DataError, PredictionError, preview
from geoseg.inference.io import BackgroundWriter, InputImages, write_prediction
from geoseg.inference.job import PredictionJob
from geoseg.inference.tta import EnsemblePredictor


def predict_images(predictor: EnsemblePredictor, images: list[Path], job: PredictionJob) -> None:
    """Write the maps of ``job`` for every PNG/JPEG of ``images``, each carrying its record.

    Images are decoded in ``job.num_workers`` processes and written in a background thread while
    the next batch is predicted; ``job.batch_size`` images of the same size share a forward pass.
    An image whose merged map holds NaN or inf stops the run with a PredictionError naming it; its
    maps are not written.
    """
    loader = DataLoader(
        InputImages(images, job.raster),
        batch_size=job.images_per_batch,
        num_workers=job.num_workers,
        collate_fn=list,
    )
    with BackgroundWriter() as writer, tqdm(total=len(images), unit="img") as progress:
        for items in loader:
            by_size: dict[tuple[int, int], list[dict]] = {}
            for item in items:
                if item["error"]:
                    raise DataError(item["error"])
                by_size.setdefault(tuple(item["image"].shape[1:]), []).append(item)
            for group in by_size.values():
                batch = torch.stack([item["image"] for item in group])
                try:
                    pred, confidence = predictor.predict(batch, job.tile_size, job.overlap)
                except PredictionError as error:
                    paths = [str(group[index]["path"]) for index in error.images]
                    raise PredictionError(f"{preview(paths, limit=3)}: {error}") from error
                for index, item in enumerate(group):
                    valid = None if item["valid"] is None else item["valid"].numpy()
                    ids, levels = job.stored_maps(pred[index], confidence[index], valid)
                    writer.submit(
                        write_prediction,
                        job.output_dir,
                        item["stem"],
                        ids,
                        levels if job.save_confidence else None,
                        job.colours if job.save_rgb else None,
                        job.record(item["path"], item["fingerprint"]),
                    )
                progress.update(len(group))
