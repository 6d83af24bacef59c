"""The demo's results report over several seeds: rows as mean ± std, claims as paired differences.

Layout read (one folder per seed, as ``make demo`` writes it):
``<runs>/seed_<s>/predictions/<row>/metrics.json`` (folder scoring) and the
prediction PNGs beside it; the KD runs' TensorBoard logs under ``<logs>/seed_<s>/<stage>/``.

Verdict rule for a claim "A beats B", on the per-seed differences d_s = mIoU(A) - mIoU(B) over n
seeds: the 95% t-interval of their mean, mean(d) ± t_{0.975, n-1} · sd(d) / sqrt(n) (sample sd).
Held when the interval lies above zero, did not hold when it lies below zero, inconclusive when it
contains zero, and always with a single seed, which gives no interval. Every seed agreeing is not
enough: with no effect at all, two seeds both come out positive one time in four.

Why a t-interval over seeds and not a (hierarchical) bootstrap: each per-seed mIoU is already one
confusion matrix over the whole Test split, so a bootstrap could only resample seeds, and with 3
seeds it has only 10 distinct resamples and understates the spread. The
t-interval is exact when the differences are normal, and can be checked by hand.
"""

import datetime
import json
import math
import os
import platform
import re
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import stats

from geoseg.datasets.io import list_files, read_mask
from geoseg.errors import DataError
from geoseg.evaluation.scoring import METRICS_JSON

HELD, NOT_HELD, INCONCLUSIVE = "held", "did not hold", "inconclusive"
CONFIDENCE = 0.95
_T_THREE_SEEDS = float(stats.t.ppf((1 + CONFIDENCE) / 2, 2))
VERDICT_RULE = (
    'A claim "A beats B" is judged on the per-seed differences d = mIoU(A) - mIoU(B) through the '
    f"{CONFIDENCE:.0%} confidence interval of their mean: **held** when the whole interval lies "
    "above zero, **did not hold** when it lies wholly below zero, **inconclusive** when it "
    "contains zero, and always with a single seed, which gives no interval. Over n seeds the "
    "interval is mean ± t × standard deviation / √n, with t from Student's t distribution with "
    f"n - 1 degrees of freedom (with 3 seeds t = {_T_THREE_SEEDS:.2f}: the mean must lie more than "
    f"{_T_THREE_SEEDS / math.sqrt(3):.2f} standard deviations from zero). Each claim shows the "
    "differences in mIoU points as mean ± standard deviation [min, max], the interval of the mean, "
    "and the difference of each seed."
)
# The recipe expects the KD mask to keep this share of the non-ignored pixels.
EXPECTED_KEPT_FRACTION = (0.70, 0.80)
KEPT_FRACTION_TAG = "kd/kept_fraction"


@dataclass(frozen=True)
class Row:
    """One model of the report and the prediction folder it was scored from."""

    label: str
    folder: str


@dataclass(frozen=True)
class Claim:
    """ "``better`` beats ``worse``" by test mIoU, with what it means for the pipeline."""

    better: str
    worse: str
    meaning: str


# The pipeline's models, in the order they are built.
DEMO_ROWS = (
    Row("teacher", "teacher"),
    Row("baseline (KD, target only)", "student_target_only"),
    Row("step 1 (combined pretraining)", "student_pretrain_all"),
    Row("step 2 (step 1 + KD fine-tuning)", "student_ft_target_kd"),
    Row("step 2 + TTA", "student_ft_target_kd_tta"),
    Row("ensemble + TTA (baseline + step 2)", "ensemble_tta"),
)
DEMO_CLAIMS = (
    Claim(
        "student_ft_target_kd",
        "student_target_only",
        "step 1 pretraining helps: the two KD runs differ only in their initialisation",
    ),
    Claim(
        "student_ft_target_kd",
        "student_pretrain_all",
        "KD fine-tuning on the target data helps the pretrained student",
    ),
    Claim("student_ft_target_kd_tta", "student_ft_target_kd", "TTA helps step 2"),
    Claim(
        "ensemble_tta",
        "student_ft_target_kd",
        "the ensemble + TTA beats the best single student without TTA",
    ),
    Claim(
        "ensemble_tta",
        "student_ft_target_kd_tta",
        "the ensemble beats its best member under the same TTA",
    ),
)
# The two members of the demo ensemble and the KD runs whose logs are read.
ENSEMBLE_MEMBERS = ("student_target_only", "student_ft_target_kd")
ENSEMBLE_ROW = "ensemble_tta"
KD_RUNS = ("student_target_only", "student_ft_target_kd")


def seed_folder(runs: Path, seed: int) -> Path:
    return Path(runs) / f"seed_{seed}"


def load_seed_scores(runs: Path, seeds: Sequence[int], rows=DEMO_ROWS) -> dict[int, dict]:
    """seed -> row folder -> that row's metrics.json; every row of every seed must be scored."""
    scores, missing = {}, []
    for seed in seeds:
        scores[seed] = {}
        for row in rows:
            path = seed_folder(runs, seed) / "predictions" / row.folder / METRICS_JSON
            if path.is_file():
                scores[seed][row.folder] = json.loads(path.read_text())
            else:
                missing.append(str(path))
    if missing:
        raise DataError(f"scores missing (score the prediction folders first): {missing}")
    return scores


@dataclass(frozen=True)
class Spread:
    """Summary of one number over seeds."""

    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        """Sample standard deviation (n - 1); 0 for a single value."""
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0

    def format(self, scale: float = 100.0) -> str:
        """``mean ± std [min, max]`` in points; a single value alone."""
        if len(self.values) == 1:
            return f"{scale * self.values[0]:.2f}"
        low, high = min(self.values), max(self.values)
        return (
            f"{scale * self.mean:.2f} ± {scale * self.std:.2f} "
            f"[{scale * low:.2f}, {scale * high:.2f}]"
        )


def mean_interval(
    differences: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float, float] | None:
    """The two-sided ``confidence`` t-interval of the mean of ``differences``: mean ± t · sd / √n
    (sample sd, n - 1 degrees of freedom); None for fewer than two values, which have no spread."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence {confidence}: expected a level between 0 and 1, e.g. 0.95")
    if len(differences) < 2:
        return None
    spread = Spread(tuple(differences))
    t = float(stats.t.ppf((1 + confidence) / 2, len(differences) - 1))
    half_width = t * spread.std / math.sqrt(len(differences))
    return spread.mean - half_width, spread.mean + half_width


def verdict(differences: Sequence[float]) -> str:
    """held / did not hold / inconclusive for per-seed differences (see VERDICT_RULE)."""
    interval = mean_interval(differences)
    if interval is None:
        return INCONCLUSIVE
    low, high = interval
    if low > 0:
        return HELD
    if high < 0:
        return NOT_HELD
    return INCONCLUSIVE


def judge_claims(
    scores: dict[int, dict], claims: Sequence[Claim] = DEMO_CLAIMS
) -> list[tuple[Claim, Spread, str]]:
    """(claim, the per-seed mIoU differences, verdict) for every claim."""
    judged = []
    for claim in claims:
        differences = tuple(
            per_seed[claim.better]["mIoU"] - per_seed[claim.worse]["mIoU"]
            for per_seed in scores.values()
        )
        judged.append((claim, Spread(differences), verdict(differences)))
    return judged


def member_disagreement(
    pred_a: np.ndarray, pred_b: np.ndarray, merged: np.ndarray, gt: np.ndarray, ignore_index: int
) -> dict[str, int]:
    """Pixel counts over the non-ignored pixels: where members a and b disagree, and at those
    pixels how often a, b and the merged prediction are right."""
    valid = gt != ignore_index
    differ = valid & (pred_a != pred_b)
    return {
        "pixels": int(valid.sum()),
        "disagree": int(differ.sum()),
        "a_right": int((differ & (pred_a == gt)).sum()),
        "b_right": int((differ & (pred_b == gt)).sum()),
        "merged_right": int((differ & (merged == gt)).sum()),
    }


def disagreement_over_folders(
    folder_a: Path, folder_b: Path, merged_folder: Path, gt_dir: Path, ignore_index: int
) -> dict[str, int]:
    """``member_disagreement`` summed over every ground-truth mask of ``gt_dir``."""
    totals = dict.fromkeys(("pixels", "disagree", "a_right", "b_right", "merged_right"), 0)
    for stem, gt_path in sorted(list_files(gt_dir).items()):
        predictions = [read_mask(Path(folder) / f"{stem}.png") for folder in (folder_a, folder_b)]
        merged = read_mask(Path(merged_folder) / f"{stem}.png")
        counts = member_disagreement(*predictions, merged, read_mask(gt_path), ignore_index)
        for key, value in counts.items():
            totals[key] += value
    return totals


def kept_fraction_of_run(log_dir: Path) -> float | None:
    """Mean ``kd/kept_fraction`` over the logged KD steps of the newest run in ``log_dir``
    (``<log_dir>/version_N``), or None when that run logged none."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    versions = sorted(
        Path(log_dir).glob("version_*"), key=lambda p: int(p.name.removeprefix("version_"))
    )
    if not versions:
        raise DataError(f"{log_dir}: no TensorBoard run (version_*) found")
    events = EventAccumulator(str(versions[-1]), size_guidance={"scalars": 0}).Reload()
    if KEPT_FRACTION_TAG not in events.Tags()["scalars"]:
        return None
    return statistics.fmean(event.value for event in events.Scalars(KEPT_FRACTION_TAG))


def mean_class_iou(entries: Sequence[dict], class_name: str) -> float | None:
    """The mean IoU of ``class_name`` over metrics.json entries (one per seed), None where no
    entry scored it."""
    ious = [entry["per_class"][class_name]["IoU"] for entry in entries]
    ious = [iou for iou in ious if iou is not None]
    return statistics.fmean(ious) if ious else None


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def run_facts(
    command: str,
    seeds: Sequence[int],
    jobs: int | None,
    threads: int | None,
    started_at: float | None,
    timed: str,
) -> dict[str, str]:
    """What a report states about its run: command, seeds, machine, date, parallelism and the
    wall time since ``started_at`` (Unix time) of ``timed`` (what it covers)."""
    facts = {
        "command": f"`{command}`",
        "seeds": " ".join(map(str, seeds)),
        "machine": describe_machine(),
        "date": datetime.date.today().isoformat(),
    }
    if jobs and threads:
        facts["parallelism"] = f"{jobs} runs at a time, {threads} thread(s) each"
    if started_at is not None:
        minutes, seconds = divmod(round(time.time() - started_at), 60)
        facts["wall time"] = f"{minutes} min {seconds:02d} s ({timed})"
    return facts


def run_facts_lines(run_info: dict[str, str], seeds: Sequence[int]) -> list[str]:
    """The run's facts as a list, and how to read the table's cells."""
    lines = [f"- {key}: {value}" for key, value in run_info.items()]
    return lines + [
        "",
        f"All scores in %, one confusion matrix over the whole Test split per run; each cell is "
        f"the mean ± standard deviation [min, max] over the {len(seeds)} seed(s) {list(seeds)}; "
        "per-class columns are mean IoU.",
        "",
    ]


def table_lines(scores: dict[int, dict], rows: Sequence[Row]) -> list[str]:
    """A Markdown table: a line per row, mIoU and OA as spreads over seeds, mean IoU per class."""
    seeds = list(scores)
    class_names = list(scores[seeds[0]][rows[0].folder]["per_class"])
    header = ["model", "mIoU", "OA", *class_names]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        entries = [scores[seed][row.folder] for seed in seeds]
        cells = [
            row.label,
            Spread(tuple(e["mIoU"] for e in entries)).format(),
            Spread(tuple(e["OA"] for e in entries)).format(),
        ]
        for name in class_names:
            iou = mean_class_iou(entries, name)
            cells.append("-" if iou is None else _pct(iou))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def claim_lines(judged: list[tuple[Claim, Spread, str]], labels: dict[str, str]) -> list[str]:
    """The verdict rule, then a line per claim: verdict, meaning, the differences overall, the
    interval of their mean and per seed."""
    lines = [VERDICT_RULE, ""]
    for claim, differences, outcome in judged:
        interval = mean_interval(differences.values)
        if interval is None:
            stated = "no interval of the mean from a single seed"
        else:
            stated = (
                f"{CONFIDENCE:.0%} interval of the mean [{_pct(interval[0])}, {_pct(interval[1])}]"
            )
        per_seed = ", ".join(f"{_pct(d)}" for d in differences.values)
        lines.append(
            f"- **{outcome}**: {labels[claim.better]} beats {labels[claim.worse]} "
            f"({claim.meaning}). Difference in mIoU points: {differences.format()}; {stated}; "
            f"per seed: {per_seed}."
        )
    return lines


def render_markdown(
    scores: dict[int, dict],
    judged: list[tuple[Claim, Spread, str]],
    disagreement: dict[int, dict[str, int]],
    kept_fractions: dict[str, dict[int, float | None]],
    run_info: dict[str, str],
    figures: dict[str, str],
    rows: Sequence[Row] = DEMO_ROWS,
) -> str:
    """The report as Markdown: run facts, the table, the claims, the ensemble and KD findings."""
    seeds = list(scores)
    labels = {row.folder: row.label for row in rows}
    lines = ["# Demo results (synthetic Test split)", ""]
    lines += run_facts_lines(run_info, seeds)
    lines += table_lines(scores, rows)
    lines += ["", "## The pipeline's claims", ""]
    lines += claim_lines(judged, labels)

    lines += ["", "## The ensemble's members", ""]
    a, b = (labels[folder] for folder in ENSEMBLE_MEMBERS)
    gap = Spread(
        tuple(
            scores[s][ENSEMBLE_MEMBERS[1]]["mIoU"] - scores[s][ENSEMBLE_MEMBERS[0]]["mIoU"]
            for s in seeds
        )
    )
    share = Spread(tuple(d["disagree"] / d["pixels"] for d in disagreement.values()))

    def at_disagreement(key: str) -> Spread:
        return Spread(tuple(d[key] / max(d["disagree"], 1) for d in disagreement.values()))

    lines.append(
        f"{b} minus {a}: {gap.format()} mIoU points. The two members predict different classes "
        f"on {share.format()}% of the labelled test pixels. Where they differ, {a} is right on "
        f"{at_disagreement('a_right').format()}%, {b} on {at_disagreement('b_right').format()}%, "
        f"and the {labels[ENSEMBLE_ROW]} on {at_disagreement('merged_right').format()}%."
    )

    lines += ["", "## Knowledge distillation: share of pixels the confidence mask keeps", ""]
    low, high = EXPECTED_KEPT_FRACTION
    for run, per_seed in kept_fractions.items():
        values = tuple(v for v in per_seed.values() if v is not None)
        if not values:
            lines.append(f"- {labels.get(run, run)}: no `{KEPT_FRACTION_TAG}` logged")
            continue
        spread = Spread(values)
        where = "below" if spread.mean < low else "above" if spread.mean > high else "within"
        lines.append(
            f"- {labels.get(run, run)}: {spread.format()}% (mean over the logged KD steps), "
            f"{where} the recipe's expected {_pct(low)}-{_pct(high)}%"
        )

    lines += ["", "## Figures", ""]
    lines += [f"- {caption}: `{name}`" for caption, name in figures.items()]
    return "\n".join(lines) + "\n"


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what the platform reports."""
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
    except OSError:
        found = None
    return found.group(1).strip() if found else platform.processor() or "CPU"


def describe_machine() -> str:
    """The CPU model and core count, the GPU if there is one, and the torch version."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu_model()}, {os.cpu_count()} cores, {gpu}; torch {torch.__version__}"
