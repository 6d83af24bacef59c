"""The demo's results report: one row per model, the pipeline's claims checked against the numbers.

Each row is a folder of predictions scored by ``evaluation/model_metrics.py`` (its metrics.json).
"""

import json
from dataclasses import dataclass
from pathlib import Path

from geoseg.errors import DataError
from geoseg.utils.metrics import METRICS_JSON


@dataclass(frozen=True)
class Row:
    """One model of the report and the prediction folder it was scored from."""

    label: str
    folder: str


# The pipeline's models, in the order they are built.
DEMO_ROWS = (
    Row("teacher", "teacher"),
    Row("baseline (KD, target only)", "student_target_only"),
    Row("step 1 (combined pretraining)", "student_pretrain_all"),
    Row("step 2 (step 1 + KD fine-tuning)", "student_ft_target_kd"),
    Row("step 2 + TTA", "student_ft_target_kd_tta"),
    Row("ensemble + TTA (baseline + step 2)", "ensemble_tta"),
)


def load_scores(predictions: Path, rows=DEMO_ROWS) -> dict[str, dict]:
    """label -> the metrics.json of that row; every row must have been scored."""
    scores, missing = {}, []
    for row in rows:
        path = predictions / row.folder / METRICS_JSON
        if path.is_file():
            scores[row.label] = json.loads(path.read_text())
        else:
            missing.append(str(path))
    if missing:
        raise DataError(
            f"scores missing (run evaluation/model_metrics.py first): {', '.join(missing)}"
        )
    return scores


def check_claims(scores: dict[str, dict]) -> list[tuple[str, bool, str]]:
    """The seed's claims as (claim, held, the numbers behind it), by test mIoU."""
    miou = {label: entry["mIoU"] for label, entry in scores.items()}
    labels = [row.label for row in DEMO_ROWS]
    teacher, baseline, step1, step2, step2_tta, ensemble = (miou[label] for label in labels)
    singles = {label: miou[label] for label in labels[1:4]}
    best_single = max(singles, key=singles.get)

    def pct(value: float) -> str:
        return f"{100 * value:.2f}"

    return [
        (
            "step 2 >= baseline (KD fine-tuning after step 1 beats KD from scratch on the target "
            "data; the two runs differ only in their initialisation, so this is also the claim "
            "that step 1 pretraining helps step 2)",
            step2 >= baseline,
            f"step 2 {pct(step2)} vs baseline {pct(baseline)} mIoU ({pct(step2 - baseline)} points)",
        ),
        (
            "ensemble + TTA >= the best single student",
            ensemble >= singles[best_single],
            f"ensemble + TTA {pct(ensemble)} vs {best_single} {pct(singles[best_single])} mIoU "
            f"(teacher: {pct(teacher)})",
        ),
        (
            "step 2 >= step 1 (KD fine-tuning on the target data helps the pretrained student)",
            step2 >= step1,
            f"step 2 {pct(step2)} vs step 1 {pct(step1)} mIoU",
        ),
        (
            "ensemble + TTA >= step 2 + TTA (the ensemble beats its best member under the same TTA)",
            ensemble >= step2_tta,
            f"ensemble + TTA {pct(ensemble)} vs step 2 + TTA {pct(step2_tta)} mIoU",
        ),
        (
            "TTA helps step 2",
            step2_tta >= step2,
            f"step 2 + TTA {pct(step2_tta)} vs step 2 {pct(step2)} mIoU",
        ),
    ]


def render_markdown(
    scores: dict[str, dict], claims: list[tuple[str, bool, str]], figures: dict[str, str]
) -> str:
    """The report as Markdown: the table, the claims, and links to the figures."""
    class_names = list(next(iter(scores.values()))["per_class"])
    header = ["model", "mIoU", "OA", *class_names]
    lines = [
        "# Demo results (synthetic Test split)",
        "",
        "All scores in %, one confusion matrix over the whole Test split; per-class columns are IoU.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
    ]
    for label, entry in scores.items():
        cells = [label, f"{100 * entry['mIoU']:.2f}", f"{100 * entry['OA']:.2f}"]
        for name in class_names:
            iou = entry["per_class"][name]["IoU"]
            cells.append("-" if iou is None else f"{100 * iou:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "## The pipeline's claims in this run", ""]
    for claim, held, numbers in claims:
        lines.append(f"- **{'held' if held else 'did NOT hold'}**: {claim}. {numbers}.")
    if not (claims[1][1] and claims[3][1]):
        members = {
            label: scores[label]["mIoU"] for label in (DEMO_ROWS[1].label, DEMO_ROWS[3].label)
        }
        gap = abs(members[DEMO_ROWS[1].label] - members[DEMO_ROWS[3].label])
        lines += [
            "",
            f"Why the ensemble falls short of its best member: its two members differ by {100 * gap:.2f} mIoU "
            "points. Averaging with a much weaker member pulls the merged map towards that "
            "member's mistakes; an ensemble pays off when its members are comparably strong and "
            "err differently.",
        ]
    lines += ["", "## Figures", ""]
    lines += [f"- {caption}: `{name}`" for caption, name in figures.items()]
    return "\n".join(lines) + "\n"
