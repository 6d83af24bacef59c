"""Write the demo's results report: a table per model, the claims checked, and figures.

    python evaluation/demo_report.py --predictions outputs/demo/predictions \
        --data-root data/demo/biodiversity --output outputs/demo

Reads the metrics.json that evaluation/model_metrics.py wrote in each prediction folder and writes
``results.md``, ``iou_per_class.png``, ``confusion_matrix.png`` (the ensemble's) and
``montage.png`` (image | ground truth | baseline | step 2 | ensemble) to --output; prints the report.
"""

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoseg.datasets.classes import colorize_mask  # noqa: E402
from geoseg.datasets.io import list_files, read_image, read_mask, write_png_atomic  # noqa: E402
from geoseg.utils.cli import run_script  # noqa: E402
from geoseg.utils.metrics import CONFUSION_MATRIX_PNG  # noqa: E402
from geoseg.utils.plots import render_grouped_bars, render_montage  # noqa: E402
from geoseg.utils.report import DEMO_ROWS, check_claims, load_scores, render_markdown  # noqa: E402

MONTAGE_COLUMNS = {
    "baseline": "student_target_only",
    "step 2": "student_ft_target_kd",
    "ensemble + TTA": "ensemble_tta",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictions", type=Path, default=Path("outputs/demo/predictions"))
    parser.add_argument("--data-root", type=Path, default=Path("data/demo/biodiversity"))
    parser.add_argument("--split", default="Test")
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--montage-tiles", type=int, default=4)
    args = parser.parse_args()

    scores = load_scores(args.predictions)
    claims = check_claims(scores)
    class_names = list(next(iter(scores.values()))["per_class"])
    bars = render_grouped_bars(
        {
            label: [entry["per_class"][name]["IoU"] for name in class_names]
            for label, entry in scores.items()
        },
        class_names,
    )
    images = list_files(args.data_root / args.split / "images_png")
    masks = list_files(args.data_root / args.split / "masks_png")
    rows = []
    for stem in sorted(images)[: args.montage_tiles]:
        tiles = [read_image(images[stem]), colorize_mask(read_mask(masks[stem]))]
        for folder in MONTAGE_COLUMNS.values():
            tiles.append(colorize_mask(read_mask(args.predictions / folder / f"{stem}.png")))
        rows.append(tiles)
    montage = render_montage(rows, ["image", "ground truth", *MONTAGE_COLUMNS])

    args.output.mkdir(parents=True, exist_ok=True)
    figures = {
        "per-class IoU of every model": "iou_per_class.png",
        "confusion matrix of the ensemble + TTA": CONFUSION_MATRIX_PNG,
        "test tiles: image | ground truth | baseline | step 2 | ensemble + TTA": "montage.png",
    }
    write_png_atomic(args.output / "iou_per_class.png", bars)
    write_png_atomic(args.output / "montage.png", montage)
    ensemble_folder = args.predictions / DEMO_ROWS[-1].folder
    shutil.copyfile(ensemble_folder / CONFUSION_MATRIX_PNG, args.output / CONFUSION_MATRIX_PNG)
    report = render_markdown(scores, claims, figures)
    (args.output / "results.md").write_text(report)
    print(report)
    print(f"wrote {args.output / 'results.md'} and its figures")


if __name__ == "__main__":
    run_script(main)
