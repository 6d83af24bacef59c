"""Write the demo's results report over several seeds: rows, claims, ensemble and KD findings.

    python evaluation/demo_report.py --runs outputs/demo --seeds 1 2 3 \
        --logs lightning_logs/demo --data-root data/demo/biodiversity --output outputs/demo

Reads, for every seed, the metrics.json that evaluation/model_metrics.py wrote in each prediction
folder (``<runs>/seed_<s>/predictions/<row>/``), the prediction masks, and the KD runs' TensorBoard
logs (``<logs>/seed_<s>/<stage>/``). Writes ``results.md``, ``iou_per_class.png`` (means over
seeds), ``confusion_matrix.png`` (the ensemble's, summed over seeds) and ``montage.png`` (first
seed: image | ground truth | baseline | step 2 | ensemble) to --output, and prints the report.
"""

from pathlib import Path

import numpy as np

from geoseg.classes import IGNORE_INDEX, colorize_mask
from geoseg.cli import ArgumentParser, run_script
from geoseg.datasets.io import list_files, read_image, read_mask, write_png_atomic
from geoseg.evaluation.plots import (
    render_confusion_matrix,
    render_grouped_bars,
    render_montage,
)
from geoseg.evaluation.report import (
    DEMO_ROWS,
    ENSEMBLE_MEMBERS,
    ENSEMBLE_ROW,
    KD_RUNS,
    disagreement_over_folders,
    judge_claims,
    kept_fraction_of_run,
    load_seed_scores,
    mean_class_iou,
    render_markdown,
    run_facts,
    seed_folder,
)
from geoseg.evaluation.scoring import CONFUSION_MATRIX_PNG
from geoseg.files import write_text_atomic

MONTAGE_COLUMNS = {
    "baseline": "student_target_only",
    "step 2": "student_ft_target_kd",
    "ensemble + TTA": "ensemble_tta",
}


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=Path, default=Path("outputs/demo"), help="seed_<s>/ parent")
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--logs", type=Path, default=Path("lightning_logs/demo"))
    parser.add_argument("--data-root", type=Path, default=Path("data/demo/biodiversity"))
    parser.add_argument("--split", default="Test")
    parser.add_argument("--output", type=Path, default=Path("outputs/demo"))
    parser.add_argument("--montage-tiles", type=int, default=4)
    parser.add_argument("--command", default="make demo", help="the command that ran the demo")
    parser.add_argument("--jobs", type=int, help="training runs at a time")
    parser.add_argument("--threads", type=int, help="torch threads of each run")
    parser.add_argument(
        "--started-at", type=float, help="Unix time the demo started (for the wall time)"
    )
    args = parser.parse_args()

    scores = load_seed_scores(args.runs, args.seeds)
    judged = judge_claims(scores)
    gt_dir = args.data_root / args.split / "masks_png"
    disagreement = {}
    for seed in args.seeds:
        predictions = seed_folder(args.runs, seed) / "predictions"
        disagreement[seed] = disagreement_over_folders(
            *(predictions / member for member in ENSEMBLE_MEMBERS),
            predictions / ENSEMBLE_ROW,
            gt_dir,
            IGNORE_INDEX,
        )
    kept = {
        run: {seed: kept_fraction_of_run(args.logs / f"seed_{seed}" / run) for seed in args.seeds}
        for run in KD_RUNS
    }
    run_info = run_facts(
        args.command,
        args.seeds,
        args.jobs,
        args.threads,
        args.started_at,
        "data, every stage, every seed",
    )

    first = scores[args.seeds[0]]
    class_names = list(first[DEMO_ROWS[0].folder]["per_class"])
    mean_iou = {
        row.label: [
            mean_class_iou([scores[s][row.folder] for s in args.seeds], name)
            for name in class_names
        ]
        for row in DEMO_ROWS
    }
    bars = render_grouped_bars(mean_iou, class_names, title="per-class IoU (%), mean over seeds")
    confusion = sum(np.asarray(scores[s][ENSEMBLE_ROW]["confusion_matrix"]) for s in args.seeds)
    images = list_files(args.data_root / args.split / "images_png")
    masks = list_files(gt_dir)
    first_predictions = seed_folder(args.runs, args.seeds[0]) / "predictions"
    rows = []
    for stem in sorted(images)[: args.montage_tiles]:
        tiles = [read_image(images[stem]), colorize_mask(read_mask(masks[stem]))]
        for folder in MONTAGE_COLUMNS.values():
            tiles.append(colorize_mask(read_mask(first_predictions / folder / f"{stem}.png")))
        rows.append(tiles)
    montage = render_montage(rows, ["image", "ground truth", *MONTAGE_COLUMNS])

    args.output.mkdir(parents=True, exist_ok=True)
    figures = {
        "per-class IoU of every model, mean over seeds": "iou_per_class.png",
        "confusion matrix of the ensemble + TTA, summed over seeds": CONFUSION_MATRIX_PNG,
        f"test tiles of seed {args.seeds[0]}: image | ground truth | baseline | step 2 | "
        "ensemble + TTA": "montage.png",
    }
    write_png_atomic(args.output / "iou_per_class.png", bars)
    write_png_atomic(
        args.output / CONFUSION_MATRIX_PNG, render_confusion_matrix(confusion, class_names)
    )
    write_png_atomic(args.output / "montage.png", montage)
    report = render_markdown(scores, judged, disagreement, kept, run_info, figures)
    write_text_atomic(args.output / "results.md", report)
    print(report)
    print(f"wrote {args.output / 'results.md'} and its figures")


if __name__ == "__main__":
    run_script(main)
