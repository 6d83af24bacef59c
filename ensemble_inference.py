"""Ensemble inference with multi-scale and flip test-time augmentation.

    python ensemble_inference.py --input-dir data/biodiversity/Test/images_png \
        --output-dir outputs/ensemble_predictions \
        --checkpoint1 model_weights/biodiversity/student_target_only/last.ckpt \
        --checkpoint2 model_weights/biodiversity/student_ft_target_kd/last.ckpt \
        --scales 0.75,1.0,1.25 --save-rgb

Writes ``<output-dir>/<stem>.png`` (uint8 class ids, the input's exact size) for every PNG or
JPEG input image (grey is repeated to RGB, an alpha channel is dropped; the bands the checkpoints
name for multispectral models), and with --save-rgb
``rgb/<stem>.png`` in the palette, with --save-probs ``confidence/<stem>.png`` (the merged map's
largest class probability x 255, or x 65535 with --confidence-bits 16).

GeoTIFF inputs (.tif, .tiff) are scenes of any size: they are predicted tile by tile by sliding
window (--tile-size, default 1024 for them), one at a time, in memory bounded by the tile size and
batch (not the scene), into ``<output-dir>/<stem>.tif``: a Cloud-Optimized GeoTIFF of class ids with the input's
CRS and transform, the palette as its colour map, and nodata 255 where the input has no data
(and ``confidence/<stem>.tif`` with --save-probs).

Each file is written under a temporary name of its own and renamed, so an interrupted run leaves
no truncated file and runs sharing an output folder (a requeued job overlapping its predecessor)
never write into one file. Every map records the input it was computed from (name, size,
modification time, a hash of its first and last MiB) and the prediction settings (checkpoints,
weights, scales, flips, merge, tile size, overlap, confidence bits; not the device or precision);
--skip-existing keeps a map only where that record matches the input and flags now, and predicts
every other input again: unfinished, damaged, replaced under its name, or predicted with other
settings. Maps written before these records existed are predicted again.

Member weights: --weights 0.5,0.3,0.2 (one per checkpoint, non-negative, normalised to sum 1) or
--selection selection.json (the checkpoints and weights evaluation/select_ensemble.py chose on the
target's Val split; members of weight 0 are not loaded) make the merge a weighted mean over the
members; without them every member counts alike.

Launched as several processes (``torchrun --nproc-per-node 4 ensemble_inference.py ...`` or
``srun``), each process predicts its own share of the inputs (whole scenes) on its own GPU.
"""

import argparse
from pathlib import Path

from geoseg.cli import ArgumentParser, run_script
from geoseg.errors import ConfigError, DataError
from geoseg.files import check_output_folder
from geoseg.inference import (
    Ensemble,
    find_inputs,
    parse_weights,
    predict,
    read_selection,
    split_scenes,
)
from geoseg.inference.cli import (
    add_ensemble_arguments,
    check_ensemble_arguments,
    load_ensemble,
    prediction_job,
)
from geoseg.inference.shards import launch_rank, shard

# The recipe's ensemble: the baseline and the step 2 student, where their stages write them. The
# folder ensemble_checkpoints/ (copies under the stage names) is used instead where it exists.
WEIGHTS = Path("model_weights/biodiversity")
LEGACY_FOLDER = WEIGHTS / "ensemble_checkpoints"
MEMBERS = ("student_target_only", "student_ft_target_kd")


def default_checkpoint(member: str) -> Path:
    legacy = LEGACY_FOLDER / f"{member}.ckpt"
    return legacy if legacy.is_file() else WEIGHTS / member / "last.ckpt"


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input-dir", type=Path, default=Path("data/biodiversity/Test/images_png"))
    parser.add_argument("--output-dir", type=Path, default=Path("outputs/ensemble_predictions"))
    parser.add_argument(
        "--checkpoint1",
        type=Path,
        help=f"first member (default {WEIGHTS / MEMBERS[0] / 'last.ckpt'}, the baseline, or "
        f"{LEGACY_FOLDER / (MEMBERS[0] + '.ckpt')} where it exists)",
    )
    parser.add_argument(
        "--checkpoint2",
        type=Path,
        help=f"second member (default {WEIGHTS / MEMBERS[1] / 'last.ckpt'}, step 2, or "
        f"{LEGACY_FOLDER / (MEMBERS[1] + '.ckpt')} where it exists)",
    )
    add_ensemble_arguments(parser)
    parser.add_argument(
        "--weights",
        help="member weights, one per checkpoint, e.g. 0.5,0.3,0.2 (non-negative, normalised to "
        "sum 1; default: equal)",
    )
    parser.add_argument(
        "--selection",
        type=Path,
        help="a selection JSON of evaluation/select_ensemble.py: its checkpoints and weights "
        "(replaces --checkpoints and --weights)",
    )
    parser.add_argument(
        "--save-rgb",
        action="store_true",
        help="also write rgb/<stem>.png (PNG and JPEG inputs; a GeoTIFF output carries the "
        "palette as its colour map, so it needs no separate RGB file)",
    )
    parser.add_argument(
        "--save-probs",
        "--save-confidence",
        action="store_true",
        help="also write confidence/<stem>.png (.tif for GeoTIFF inputs)",
    )
    parser.add_argument(
        "--confidence-bits",
        type=int,
        choices=(8, 16),
        default=8,
        help="confidence as round(probability x 255) in uint8 or x 65535 in uint16",
    )
    parser.add_argument(
        "--skip-existing",
        action="store_true",
        help="skip inputs whose outputs are all written, whole, from the input as it is now and "
        "with these settings",
    )
    args = parser.parse_args()
    check_ensemble_arguments(args)
    return args


def members(args: argparse.Namespace) -> tuple[list[Path], list[float] | None]:
    """(checkpoints, weights or None for equal weights) from the flags."""
    if args.selection is not None:
        flags = ("checkpoints", "checkpoint1", "checkpoint2", "weights")
        given = [f"--{flag}" for flag in flags if getattr(args, flag) is not None]
        if given:
            raise ConfigError(
                f"--selection {args.selection} names the members and their weights; "
                f"drop {', '.join(given)}"
            )
        return read_selection(args.selection)
    checkpoints = args.checkpoints or [
        args.checkpoint1 or default_checkpoint(MEMBERS[0]),
        args.checkpoint2 or default_checkpoint(MEMBERS[1]),
    ]
    if args.weights is None:
        return checkpoints, None
    try:
        weights = list(parse_weights(args.weights, len(checkpoints), name="--weights"))
    except ValueError as error:
        raise ConfigError(str(error)) from error
    kept = [(path, w) for path, w in zip(checkpoints, weights, strict=True) if w > 0]
    return [path for path, _ in kept], [w for _, w in kept]


def prediction_settings(ensemble: Ensemble, args: argparse.Namespace) -> dict:
    """The settings every map records and --skip-existing compares: what the maps depend on. The
    device, precision and batch size are left out, so that a run resumed on another machine keeps
    what is done."""
    return {
        "checkpoints": [str(path.resolve()) for path in ensemble.checkpoints],
        "weights": None if ensemble.predictor.weights is None else list(ensemble.predictor.weights),
        "scales": list(args.scales),
        "flips": list(args.flips),
        "merge": args.merge,
        "tile_size": args.tile_size,
        "overlap": args.overlap,
        "confidence_bits": args.confidence_bits,
    }


def main() -> None:
    args = parse_args()
    check_output_folder(args.output_dir, "--output-dir")
    if args.input_dir.resolve() == args.output_dir.resolve():
        raise DataError(
            f"--output-dir {args.output_dir} is the input folder: predictions would mix with the "
            "images; choose another folder"
        )
    checkpoints, weights = members(args)
    ensemble = load_ensemble(checkpoints, args, weights)
    predictor = ensemble.predictor
    job = prediction_job(
        args,
        ensemble,
        args.output_dir,
        prediction_settings(ensemble, args),
        save_rgb=args.save_rgb,
        save_confidence=args.save_probs,
        confidence_bits=args.confidence_bits,
    )
    # Under torchrun or srun, this process's share (whole scenes); split before --skip-existing
    # looks at the outputs, which the other processes are writing meanwhile.
    rank, world_size, _ = launch_rank()
    owned = [
        path
        for paths in split_scenes(find_inputs(args.input_dir))
        for path in shard(paths, rank, world_size)
    ]
    inputs = job.still_to_do(owned) if args.skip_existing else owned
    scenes, images = split_scenes(inputs)
    where = f"process {rank} of {world_size}, " if world_size > 1 else ""
    weighting = ""
    if predictor.weights is not None:
        weighting = f" (weights {', '.join(f'{w:.3g}' for w in predictor.weights)})"
    print(
        f"{where}{len(checkpoints)} models{weighting} x {len(args.scales)} scales x "
        f"{len(args.flips)} flips = "
        f"{predictor.passes} predictions per pixel on {ensemble.device} in {predictor.precision}; "
        f"{len(images)} images and "
        f"{len(scenes)} GeoTIFF scenes to predict"
    )
    predict(predictor, inputs, job, leftovers_of=owned)
    if scenes and not images:
        print(f"wrote {len(scenes)} scenes to {args.output_dir}")
    else:
        print(f"wrote {len(images)} predictions and {len(scenes)} scenes to {args.output_dir}")


if __name__ == "__main__":
    run_script(main)
