"""The command-line arguments every ensemble script shares (TTA, device, tiling) and their check."""

import argparse
from pathlib import Path

from geoseg.cli import at_least
from geoseg.errors import ConfigError
from geoseg.hardware import resolve_device
from geoseg.inference.ensemble import Ensemble
from geoseg.inference.job import PredictionJob
from geoseg.inference.shards import launch_rank
from geoseg.inference.tta import PRECISIONS, parse_flips, parse_scales
from geoseg.inference.windows import SCENE_TILE_SIZE, SCENE_TILES_PER_BATCH, check_overlap


def add_tta_arguments(
    parser: argparse.ArgumentParser, scales: str = "0.75,1.0,1.25", flips: str = "none,h,v"
) -> None:
    """--scales, --flips, --merge, --num-workers, --device and --precision (defaults: the TTA of
    ``scales`` and ``flips``)."""
    parser.add_argument("--scales", default=scales, help="comma-separated resize factors")
    parser.add_argument("--flips", default=flips, help="subset of none,h,v")
    parser.add_argument(
        "--merge",
        choices=("logits", "probs"),
        default="logits",
        help="average the logits (the recipe's rule) or the softmax probabilities",
    )
    parser.add_argument(
        "--num-workers", type=at_least(0), default=2, help="image decoding processes"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: bf16 autocast on GPUs with bf16 and on CPUs with native bf16 (AMX or "
        "AVX512-BF16), fp32 elsewhere; the merge and the argmax are fp32 in every case",
    )


def add_ensemble_arguments(
    parser: argparse.ArgumentParser,
    checkpoints_help: str = "any number of checkpoints (any architecture); replaces "
    "--checkpoint1/--checkpoint2",
) -> None:
    """--checkpoints, the TTA flags, --batch-size, --tile-size and --overlap (ensemble_inference.py
    and pseudo_label.py)."""
    parser.add_argument("--checkpoints", type=Path, nargs="+", help=checkpoints_help)
    add_tta_arguments(parser)
    parser.add_argument(
        "--batch-size",
        type=at_least(1),
        help="images per forward pass (default 1), or tiles of a GeoTIFF scene (default "
        f"{SCENE_TILES_PER_BATCH})",
    )
    parser.add_argument(
        "--tile-size",
        type=int,
        help="predict large images by sliding window of this size (GeoTIFF scenes always are: "
        f"default {SCENE_TILE_SIZE})",
    )
    parser.add_argument("--overlap", type=int, default=128, help="sliding-window overlap in pixels")


def check_tta_arguments(args: argparse.Namespace) -> None:
    """Parse --scales and --flips in place; a bad value is a one-line ConfigError that names it."""
    try:
        args.scales, args.flips = parse_scales(args.scales), parse_flips(args.flips)
    except ValueError as error:
        raise ConfigError(f"--{error}") from error


def check_ensemble_arguments(args: argparse.Namespace) -> None:
    """Parse --scales, --flips and --device in place and check --overlap; a bad value is a
    one-line ConfigError that names it, before anything is loaded or written."""
    check_tta_arguments(args)
    try:
        check_overlap(args.overlap, args.tile_size or SCENE_TILE_SIZE)
    except ValueError as error:
        raise ConfigError(f"--{error}") from error
    _, world_size, local_rank = launch_rank()  # one GPU per process when launched as several
    try:
        args.device = resolve_device(args.device, local_rank if world_size > 1 else None)
    except ValueError as error:
        raise ConfigError(f"--{error}") from error


def load_ensemble(
    checkpoints: list[Path], args: argparse.Namespace, weights: list[float] | None = None
) -> Ensemble:
    """The ensemble of ``checkpoints`` with the flags as ``check_ensemble_arguments`` left them and
    the members' ``weights`` (None: equal)."""
    return Ensemble.load(
        checkpoints,
        scales=args.scales,
        flips=args.flips,
        merge=args.merge,
        device=args.device,
        precision=args.precision,
        weights=weights,
    )


def prediction_job(
    args: argparse.Namespace,
    ensemble: Ensemble,
    output_dir: Path,
    settings: dict,
    **stored,
) -> PredictionJob:
    """The job of the shared flags (--tile-size, --overlap, --batch-size, --num-workers) for the
    members of ``ensemble`` (their palette and bands) into ``output_dir``, recording ``settings``;
    ``stored``: what is written beside the class maps (save_rgb, save_confidence,
    confidence_bits)."""
    return PredictionJob(
        output_dir,
        tile_size=args.tile_size,
        overlap=args.overlap,
        batch_size=args.batch_size,
        num_workers=args.num_workers,
        palette=ensemble.spec.palette,
        raster=ensemble.spec.raster,
        settings=settings,
        **stored,
    )
