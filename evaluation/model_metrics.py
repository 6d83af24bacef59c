"""Score folders of predicted class-id masks against ground truth.

    python evaluation/model_metrics.py --pred-dir outputs/ensemble_predictions \
        --gt-dir data/biodiversity/Test/masks_png

Masks are single-channel uint8 class-id images (png or tif) matched by file stem. Prints the
score table and writes metrics.json and confusion_matrix.png to --out-dir (default: --pred-dir).
Several --pred-dir folders are scored one after the other, each into its own folder. Nothing is
written when any file is missing, extra, unreadable or of the wrong size.
"""

import argparse
import sys
from pathlib import Path

from geoseg.classes import CLASSES, IGNORE_INDEX, NUM_CLASSES
from geoseg.cli import ArgumentParser
from geoseg.datasets.io import write_png_atomic
from geoseg.errors import GeoSegError
from geoseg.evaluation.plots import render_confusion_matrix
from geoseg.evaluation.scoring import (
    CONFUSION_MATRIX_PNG,
    METRICS_JSON,
    evaluate_folders,
    save_metrics_json,
)
from geoseg.metrics import format_scores_table, segmentation_scores


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--pred-dir", type=Path, nargs="+", required=True, help="folder(s) of predicted masks"
    )
    parser.add_argument("--gt-dir", type=Path, required=True, help="ground-truth class-id masks")
    parser.add_argument(
        "--out-dir", type=Path, help="where to write the report (default: --pred-dir)"
    )
    parser.add_argument("--num-classes", type=int, default=NUM_CLASSES)
    parser.add_argument("--ignore-index", type=int, default=IGNORE_INDEX)
    args = parser.parse_args(argv)
    if args.num_classes < 1:
        parser.error(f"--num-classes must be at least 1, got {args.num_classes}")
    if args.out_dir is not None and len(args.pred_dir) > 1:
        parser.error("--out-dir takes one --pred-dir; with several, each is scored into itself")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.num_classes == len(CLASSES):
        class_names = list(CLASSES)
    else:
        class_names = [f"class_{i}" for i in range(args.num_classes)]
    for pred_dir in args.pred_dir:
        if len(args.pred_dir) > 1:
            print(f"== {pred_dir}")
        try:
            cm = evaluate_folders(pred_dir, args.gt_dir, args.num_classes, args.ignore_index)
            scores = segmentation_scores(cm, class_names)
        except (GeoSegError, OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        figure = render_confusion_matrix(cm, class_names)

        print(format_scores_table(scores))
        out_dir = args.out_dir or pred_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        save_metrics_json(scores, out_dir / METRICS_JSON)
        write_png_atomic(out_dir / CONFUSION_MATRIX_PNG, figure)
        print(f"\nwrote {out_dir / METRICS_JSON} and {out_dir / CONFUSION_MATRIX_PNG}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
