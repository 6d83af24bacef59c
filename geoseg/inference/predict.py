"""The one entry point of prediction: a folder's PNG/JPEG tiles and GeoTIFF scenes, by one job."""

from pathlib import Path

from tqdm import tqdm

from geoseg.datasets.io import open_raster, raster_bands
from geoseg.files import remove_stale_temporaries
from geoseg.inference.images import predict_images
from geoseg.inference.job import PredictionJob, split_scenes
from geoseg.inference.scene import predict_scene
from geoseg.inference.tta import EnsemblePredictor


def predict(
    predictor: EnsemblePredictor,
    inputs: list[Path],
    job: PredictionJob,
    leftovers_of: list[Path] | None = None,
) -> None:
    """Write the maps of ``job`` for every input: GeoTIFF scenes first, one at a time by sliding
    window, then PNG/JPEG tiles in batches.

    Every scene's band layout is checked first, so that a scene the networks cannot read fails
    before hours of work on the others. Temporary files that interrupted runs left for
    ``leftovers_of`` (default: ``inputs``; a resumed run passes every input it owns, finished ones
    included) are deleted; those of runs still writing into the folder are not.
    """
    scenes, images = split_scenes(inputs)
    for source in scenes:
        with open_raster(source) as dataset:
            raster_bands(source, dataset, job.raster)
    owned = inputs if leftovers_of is None else leftovers_of
    stems: dict[Path, list[str]] = {}  # output folder -> the stems of its maps
    for source in owned:
        for output in job.outputs(source):
            stems.setdefault(output.parent, []).append(source.stem)
    for folder, folder_stems in stems.items():
        folder.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(folder, folder_stems)
    for source in tqdm(scenes, unit="scene", disable=not scenes):
        predict_scene(predictor, source, job, progress=True)
    if images:
        predict_images(predictor, images, job)
