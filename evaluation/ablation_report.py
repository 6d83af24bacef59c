"""Write the ablation report over several seeds: each lever against its reference, with verdicts.

    python evaluation/ablation_report.py --runs outputs/ablation --seeds 1 2 3 \
        --data-root data/demo/biodiversity --output outputs/ablation

Reads, for every seed, the metrics.json that evaluation/model_metrics.py wrote in each prediction
folder (``<runs>/seed_<s>/predictions/<row>/``), the prediction masks and the pseudo-labels'
summary.json and the step 1 set's pre-flight (the classes the second domain lacks); writes
``results.md`` to --output and prints it.
"""

import json
from pathlib import Path

from geoseg.classes import IGNORE_INDEX
from geoseg.cli import ArgumentParser, run_script
from geoseg.errors import DataError
from geoseg.evaluation.ablation import (
    ABLATION_CLAIMS,
    ABLATION_ROWS,
    FAMILIES_ENSEMBLE,
    FAMILY_MEMBERS,
    REFERENCE,
    add_best_member,
    render_ablation_markdown,
)
from geoseg.evaluation.report import (
    disagreement_over_folders,
    judge_claims,
    load_seed_scores,
    run_facts,
    seed_folder,
)
from geoseg.files import write_text_atomic


def main() -> None:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--runs", type=Path, default=Path("outputs/ablation"), help="seed_<s>/ parent"
    )
    parser.add_argument("--seeds", type=int, nargs="+", required=True)
    parser.add_argument("--data-root", type=Path, default=Path("data/demo/biodiversity"))
    parser.add_argument("--split", default="Test")
    parser.add_argument(
        "--pseudo-labels",
        type=Path,
        default=Path("data/demo/pseudo_labels"),
        help="seed_<s>/summary.json parent (pseudo_label.py's output roots)",
    )
    parser.add_argument(
        "--preflight",
        type=Path,
        default=Path("data/demo/biodiversity_combined/preflight.json"),
        help="the step 1 set's pre-flight (create_combined_dataset.py wrote it): the classes the "
        "second domain lacks",
    )
    parser.add_argument("--output", type=Path, default=Path("outputs/ablation"))
    parser.add_argument("--command", default="make ablation", help="the command that ran it")
    parser.add_argument("--jobs", type=int, help="training runs at a time")
    parser.add_argument("--threads", type=int, help="torch threads of each run")
    parser.add_argument("--started-at", type=float, help="Unix time the run started")
    args = parser.parse_args()

    scores = load_seed_scores(args.runs, args.seeds, rows=ABLATION_ROWS)
    best = add_best_member(scores)
    judged = judge_claims(scores, ABLATION_CLAIMS)
    gt_dir = args.data_root / args.split / "masks_png"
    disagreement = {}
    for member in FAMILY_MEMBERS[1:]:
        disagreement[member] = {}
        for seed in args.seeds:
            predictions = seed_folder(args.runs, seed) / "predictions"
            disagreement[member][seed] = disagreement_over_folders(
                predictions / REFERENCE,
                predictions / member,
                predictions / FAMILIES_ENSEMBLE,
                gt_dir,
                IGNORE_INDEX,
            )
    run_info = run_facts(
        args.command,
        args.seeds,
        args.jobs,
        args.threads,
        args.started_at,
        "data, every run, every seed",
    )

    pseudo_labels = {}
    for seed in args.seeds:
        summary = args.pseudo_labels / f"seed_{seed}" / "summary.json"
        if not summary.is_file():
            raise DataError(f"{summary}: pseudo-label summary missing (run pseudo_label.py)")
        pseudo_labels[seed] = json.loads(summary.read_text())
    if not args.preflight.is_file():
        raise DataError(f"{args.preflight}: pre-flight missing (run create_combined_dataset.py)")
    lacking = json.loads(args.preflight.read_text())["lacking"]["oem"]
    report = render_ablation_markdown(
        scores, judged, best, disagreement, run_info, pseudo_labels, lacking_classes=lacking
    )
    args.output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.output / "results.md", report)
    print(report)
    print(f"wrote {args.output / 'results.md'}")


if __name__ == "__main__":
    run_script(main)
