"""Pseudo-label unlabelled target tiles with the ensemble: confident pixels become training labels.

    python pseudo_label.py --input-dir data/biodiversity/Unlabelled/images_png \
        --output-root data/biodiversity_pseudo --threshold 0.9 --checkpoints \
        model_weights/biodiversity/student_target_only/last.ckpt \
        model_weights/biodiversity/student_ft_target_kd/last.ckpt

For every tile the ensemble's merged TTA prediction (the flags of ensemble_inference.py); a pixel
keeps its class where the merged confidence is at least --threshold (equality kept) and is marked
ignore elsewhere, or, with --class-balanced SHARE, where it is among the SHARE most confident pixels
of its class over all tiles. Writes the target layout under --output-root (Train/images_png: links
to the tiles, Train/masks_png: the pseudo-labels) for TargetDataset, the ensemble's outputs
(ensemble/), settings.json and summary.json (kept share of pixels overall and per class, the
thresholds). Never writes into --input-dir. An interrupted run, started again with the same flags,
predicts only the tiles it had not finished, and those replaced since under the same name (each
ensemble output records its tile's size, modification time and a hash of its content; an output
folder written before these records existed is predicted again, whole); other thresholds re-derive
the masks without predicting again.
"""

import argparse
from pathlib import Path

from geoseg.cli import ArgumentParser, run_script
from geoseg.errors import DataError
from geoseg.inference import find_inputs, predict
from geoseg.inference.cli import (
    add_ensemble_arguments,
    check_ensemble_arguments,
    load_ensemble,
    prediction_job,
)
from geoseg.inference.pseudo_labels import (
    ENSEMBLE_DIR,
    check_folders,
    check_settings,
    write_pseudo_labels,
)


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--input-dir", type=Path, required=True, help="the unlabelled tiles")
    parser.add_argument("--output-root", type=Path, required=True, help="a new folder")
    add_ensemble_arguments(
        parser, "the models that label the tiles (any number, any architecture; required)"
    )
    parser.add_argument(
        "--threshold", type=float, default=0.9, help="merged confidence a pixel must reach"
    )
    parser.add_argument(
        "--class-balanced",
        type=float,
        metavar="SHARE",
        help="instead of --threshold: each class keeps its SHARE (0-1] most confident pixels",
    )
    args = parser.parse_args()
    if args.checkpoints is None:
        parser.error("--checkpoints is required: the models that label the tiles")
    check_ensemble_arguments(args)
    if not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be in [0, 1], got {args.threshold}")
    if args.class_balanced is not None and not 0.0 < args.class_balanced <= 1.0:
        parser.error(f"--class-balanced must be in (0, 1], got {args.class_balanced}")
    return args


def main() -> None:
    args = parse_args()
    check_folders(args.input_dir, args.output_root)
    inputs = find_inputs(args.input_dir)
    ensemble = load_ensemble(args.checkpoints, args)
    predictor, spec = ensemble.predictor, ensemble.spec
    ignore_index = spec.ignore_index  # one for all members: load_ensemble checks
    if not spec.num_classes <= ignore_index <= 255:
        raise DataError(
            f"{args.checkpoints[0]}: ignore id {ignore_index}; pseudo-labels need an ignore id "
            f"between the class count ({spec.num_classes}) and 255 to mark unlabelled pixels"
        )
    # what the ensemble outputs depend on: a resumed run must predict with the same
    settings = {
        "input_dir": str(args.input_dir.resolve()),
        "checkpoints": [str(path.resolve()) for path in args.checkpoints],
        "scales": list(args.scales),
        "flips": list(args.flips),
        "merge": args.merge,
        "tile_size": args.tile_size,
        "overlap": args.overlap if args.tile_size else None,
    }
    check_settings(args.output_root, settings)
    job = prediction_job(
        args,
        ensemble,
        args.output_root / ENSEMBLE_DIR,
        settings,
        save_confidence=True,
        confidence_bits=16,
    )
    pending = job.still_to_do(inputs)
    print(
        f"{predictor.passes} predictions per pixel on {ensemble.device} in {predictor.precision}; "
        f"{len(pending)} of {len(inputs)} "
        "tiles to predict"
    )
    predict(predictor, pending, job, leftovers_of=inputs)
    summary = write_pseudo_labels(
        args.output_root,
        inputs,
        spec.classes,
        ignore_index,
        threshold=args.threshold,
        class_balanced_share=args.class_balanced,
    )
    print(
        f"{summary['tiles']} tiles, {summary['kept_share']:.2%} of the pixels kept ({summary['rule']})"
    )
    for name, entry in summary["per_class"].items():
        share = "-" if entry["kept_share"] is None else f"{entry['kept_share']:.2%}"
        threshold = "-" if entry["threshold"] is None else f"{entry['threshold']:.4f}"
        print(f"  {name:<12} threshold {threshold}  kept {share} of {entry['predicted_pixels']} px")
    print(f"wrote the pseudo-labels to {args.output_root / 'Train'}")


if __name__ == "__main__":
    run_script(main)
