"""The ablation report (`make ablation`): the recipe's next steps against the stage they extend.

Same layout, seeds and verdict rule as the demo report (``geoseg.evaluation.report``): a claim
holds when the 95% t-interval of the mean per-seed mIoU difference lies above zero. Each lever is
a row and a claim "the stage with the lever beats the same stage without it"; nothing is tuned per
lever: a lever's run differs from its reference only in that lever.

Levers measured: other architectures trained as the FT-UNetFormer student (step 1 on target +
OpenEarthMap, step 2 with KD); the ensemble of the different families against its best member
(chosen per seed on the Test split itself, the strictest reference the ensemble can face); and
self-training (step 3: the step 2 student trained on Train + the unlabelled tiles the families'
ensemble pseudo-labelled) against step 2; and step 2 with one lever against class imbalance or
one mixing augmentation (class-weighted CE, Lovász in place of Dice, rare-class crops, ClassMix)
against step 2 as it is; levers against a second domain that hurts (step 1 with domain-balanced
batches, on resolution-matched data, with a partial remap; step 2 from step 1's best checkpoint on
the target's Val), each as the step 2 it leads to against step 2 as shipped, with the IoU of the
classes the second domain lacks at step 1 and step 2; and the families' ensemble whose members and
weights are chosen on the target's Val (greedy forward selection) against the equal-weight one.
"""

from collections.abc import Sequence

from geoseg.evaluation.report import (
    Claim,
    Row,
    Spread,
    claim_lines,
    run_facts_lines,
    table_lines,
)

REFERENCE = "student_ft_target_kd"
FAMILY_MEMBERS = (REFERENCE, "segformer_ft_target_kd", "upernet_ft_target_kd")
FAMILIES_ENSEMBLE = "families_ensemble"
SELECTED_ENSEMBLE = "families_ensemble_selected"
STEP1 = "student_pretrain_all"
SELF_TRAINING = "student_self_training"
BEST_MEMBER = "best_member"  # per seed, the family member with the highest Test mIoU

ABLATION_ROWS = (
    Row("FT-UNetFormer step 2 (the recipe's student)", REFERENCE),
    Row("SegFormer step 2", "segformer_ft_target_kd"),
    Row("UPerNet step 2", "upernet_ft_target_kd"),
    Row("ensemble of the three families", FAMILIES_ENSEMBLE),
    Row("step 3: FT-UNetFormer self-trained on pseudo-labels", SELF_TRAINING),
)
# Step 2 with one change each (config/demo/step2_<lever>.py): folder, row label, what it changes.
LEVERS = (
    (
        "student_ft_target_kd_class_weighted",
        "step 2 + class-weighted CE",
        "cross-entropy weighted by the inverse square root of Train's class shares helps",
    ),
    (
        "student_ft_target_kd_lovasz",
        "step 2 + Lovász in place of Dice",
        "CE + Lovász-softmax (an IoU surrogate) beats CE + Dice",
    ),
    (
        "student_ft_target_kd_rare_class_crops",
        "step 2 + rare-class crops",
        "half the items from a tile containing a class drawn uniformly among Train's, cropped "
        "around one of its pixels, helps",
    ),
    (
        "student_ft_target_kd_classmix",
        "step 2 + ClassMix",
        "pasting half the classes of another image of the batch (p = 0.5) helps",
    ),
)
ABLATION_ROWS += tuple(Row(label, folder) for folder, label, _ in LEVERS)
# Levers against a second domain that hurts: (name, step 1 folder, step 2 folder, row label of the
# step 2 run, what the claim says). Step 2 is the shipped config, started from that step 1 run;
# "from_best" changes step 2's starting checkpoint alone (step 1 as shipped, its best on Val).
DOMAIN_LEVERS = (
    (
        "balanced",
        "student_pretrain_balanced",
        "student_ft_target_kd_from_balanced",
        "step 2 after step 1 with domain-balanced batches",
        "half of every step 1 batch from the target, whatever the two sets' sizes, helps",
    ),
    (
        "matched",
        "student_pretrain_matched",
        "student_ft_target_kd_from_matched",
        "step 2 after step 1 on resolution-matched data",
        "resizing the second domain to the target's ground sampling distance helps",
    ),
    (
        "partial",
        "student_pretrain_partial",
        "student_ft_target_kd_from_partial",
        "step 2 after step 1 with the partial remap",
        "rangeland as 'forest or grassland' (partial-label loss) and bareland ignored helps",
    ),
    (
        "from_best",
        STEP1,
        "student_ft_target_kd_from_best",
        "step 2 from step 1's best checkpoint on the target's Val",
        "starting step 2 from step 1's best epoch on the target's Val instead of its last helps",
    ),
)
STEP1_ROWS = (
    Row("step 1 as shipped", STEP1),
    Row("step 1 with domain-balanced batches", "student_pretrain_balanced"),
    Row("step 1 on resolution-matched data", "student_pretrain_matched"),
    Row("step 1 with the partial remap", "student_pretrain_partial"),
)
# Step 0: the student pretrained on weak labels rasterised from map data
# (config/demo/step0_pretrain_map_labels.py), then step 1 from it and step 2 as shipped.
STEP0 = "student_pretrain_map_labels"
STEP1_FROM_STEP0 = "student_pretrain_all_from_step0"
STEP2_FROM_STEP0 = "student_ft_target_kd_from_step0"
STEP0_ROWS = (
    Row("step 0: pretrained on map labels alone", STEP0),
    Row("step 1 after step 0", STEP1_FROM_STEP0),
    Row("step 2 after step 0 and step 1", STEP2_FROM_STEP0),
)
ABLATION_ROWS += (
    *STEP1_ROWS,
    *(Row(label, step2) for _, _, step2, label, _ in DOMAIN_LEVERS),
    *STEP0_ROWS,
    Row("ensemble of the three families, members and weights chosen on Val", SELECTED_ENSEMBLE),
)
ABLATION_CLAIMS = (
    Claim("segformer_ft_target_kd", REFERENCE, "SegFormer is a stronger step 2 student"),
    Claim("upernet_ft_target_kd", REFERENCE, "UPerNet is a stronger step 2 student"),
    Claim(
        FAMILIES_ENSEMBLE,
        BEST_MEMBER,
        "an ensemble of different families beats its best member, all at scale 1 without flips",
    ),
    Claim(
        SELF_TRAINING,
        REFERENCE,
        "training step 2 further on Train + the ensemble's confident pseudo-labels helps; this "
        "also adds a second schedule, with no control run on Train alone",
    ),
    *(Claim(folder, REFERENCE, change) for folder, _, change in LEVERS),
    *(Claim(step2, REFERENCE, change) for _, _, step2, _, change in DOMAIN_LEVERS),
    Claim(
        STEP2_FROM_STEP0,
        REFERENCE,
        "pretraining on weak labels from map data (step 0) before step 1 helps",
    ),
    Claim(
        SELECTED_ENSEMBLE,
        FAMILIES_ENSEMBLE,
        "choosing the members and their weights on the target's Val (greedy forward selection "
        "with replacement) beats weighting the three families equally",
    ),
)


def add_best_member(
    scores: dict[int, dict], members: Sequence[str] = FAMILY_MEMBERS
) -> dict[int, str]:
    """Add each seed's best member's scores under ``BEST_MEMBER``; return seed -> that member."""
    best = {}
    for seed, per_seed in scores.items():
        best[seed] = max(members, key=lambda member: per_seed[member]["mIoU"])
        per_seed[BEST_MEMBER] = per_seed[best[seed]]
    return best


def render_ablation_markdown(
    scores: dict[int, dict],
    judged: list,
    best: dict[int, str],
    disagreement: dict[str, dict[int, dict[str, int]]],
    run_info: dict[str, str],
    pseudo_labels: dict[int, dict] | None = None,
    rows: Sequence[Row] = ABLATION_ROWS,
    lacking_classes: Sequence[str] = (),
) -> str:
    """The report: run facts, the table, the claims, how the families' errors differ, what
    the pseudo-labels kept (``pseudo_labels``: seed -> pseudo_label.py's summary.json) and, per
    lever against the second domain, the IoU of ``lacking_classes`` (the classes the combined
    set's pre-flight found the second domain lacks).

    ``disagreement``: member folder -> seed -> ``member_disagreement`` counts of the reference
    (a) against that member (b), with the families' ensemble as the merged prediction.
    """
    labels = {row.folder: row.label for row in rows}
    labels[BEST_MEMBER] = "its best member"
    lines = ["# Ablation: the recipe's next steps (synthetic Test split)", ""]
    lines += run_facts_lines(run_info, list(scores))
    lines += table_lines(scores, rows)
    lines += ["", "## Claims", ""]
    lines += claim_lines(judged, labels)
    lines.append(
        "- Best member per seed: "
        + ", ".join(f"seed {seed}: {labels[member]}" for seed, member in best.items())
        + "."
    )
    lines += ["", "## Where the families disagree", ""]
    reference = labels[REFERENCE]
    for member, per_seed in disagreement.items():
        counts = list(per_seed.values())
        share = Spread(tuple(d["disagree"] / d["pixels"] for d in counts))

        def right(key: str, counts=counts) -> str:
            return Spread(tuple(d[key] / max(d["disagree"], 1) for d in counts)).format()

        lines.append(
            f"- {reference} and {labels[member]} predict different classes on {share.format()}% "
            f"of the labelled test pixels; there the first is right on {right('a_right')}%, the "
            f"second on {right('b_right')}%, the ensemble on {right('merged_right')}%."
        )
    if lacking_classes:
        lines += ["", "## The classes the second domain lacks", ""]
        lines += lacking_class_lines(scores, lacking_classes, labels)
    if pseudo_labels:
        lines += ["", "## What the pseudo-labels kept (step 3's unlabelled tiles)", ""]
        summaries = list(pseudo_labels.values())
        overall = Spread(tuple(summary["kept_share"] for summary in summaries))
        lines.append(
            f"- {summaries[0]['tiles']} tiles, {summaries[0]['rule']}: {overall.format()}% of "
            "the pixels kept"
        )
        for name in summaries[0]["per_class"]:
            shares = [summary["per_class"][name]["kept_share"] for summary in summaries]
            if None not in shares:
                lines.append(f"- {name}: {Spread(tuple(shares)).format()}% of its pixels kept")
    return "\n".join(lines) + "\n"


def lacking_class_lines(
    scores: dict[int, dict], lacking_classes: Sequence[str], labels: dict[str, str]
) -> list[str]:
    """A line per step 1 and step 2 run of the domain levers: the Test IoU of each class the
    second domain lacks, mean ± std [min, max] over seeds ("-" where no seed scored it)."""
    folders = [row.folder for row in STEP1_ROWS]
    folders += [REFERENCE, *(step2 for _, _, step2, _, _ in DOMAIN_LEVERS)]
    lines = [
        f"Test IoU (%) of {', '.join(lacking_classes)}: the classes the pre-flight found the second "
        "domain lacks, which step 1 can only learn from the target tiles.",
        "",
    ]
    for folder in folders:
        cells = []
        for name in lacking_classes:
            ious = [scores[seed][folder]["per_class"][name]["IoU"] for seed in scores]
            ious = tuple(iou for iou in ious if iou is not None)
            cells.append(f"{name} {Spread(ious).format() if ious else '-'}")
        lines.append(f"- {labels[folder]}: " + "; ".join(cells))
    return lines
