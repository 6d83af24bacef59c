"""The demo report over seeds: verdicts from hand-made per-seed scores, spreads, disagreement."""

import math

import numpy as np
import pytest

from geoseg.evaluation.report import (
    DEMO_ROWS,
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    Claim,
    Spread,
    claim_lines,
    judge_claims,
    mean_interval,
    member_disagreement,
    render_markdown,
    verdict,
)


def scores_for(miou_by_seed: dict[int, dict[str, float]]) -> dict[int, dict]:
    """Per-seed metrics.json-like entries with the given mIoU per row folder."""
    return {
        seed: {
            folder: {
                "mIoU": miou,
                "OA": miou,
                "per_class": {"a": {"IoU": miou}, "b": {"IoU": None}},
            }
            for folder, miou in rows.items()
        }
        for seed, rows in miou_by_seed.items()
    }


CLAIM = Claim("new", "old", "the new model helps")


def assert_says(report: str, *passages: str) -> None:
    """Every one of ``passages`` stands in ``report``."""
    for passage in passages:
        assert passage in report


# Student's t, 97.5th percentile, 2 degrees of freedom: (2p - 1) / sqrt(2p(1 - p)) at p = 0.975.
T_975_2 = 4.302652729749464


@pytest.mark.parametrize(
    ("new", "old", "expected"),
    [
        ((0.68, 0.60, 0.72), (0.50, 0.50, 0.50), HELD),  # d = 0.18, 0.10, 0.22: large, consistent
        ((0.50, 0.50, 0.50), (0.68, 0.60, 0.72), NOT_HELD),  # its mirror
        ((0.5024, 0.5343), (0.50, 0.50), INCONCLUSIVE),  # two small positive: a coin flip
        ((0.60, 0.55, 0.61), (0.58, 0.57, 0.60), INCONCLUSIVE),  # mixed signs, small mean
        ((0.70,), (0.50,), INCONCLUSIVE),  # one seed cannot tell a difference from noise
    ],
)
def test_verdict_from_per_seed_scores(new, old, expected):
    scores = scores_for(
        {seed: {"new": n, "old": o} for seed, (n, o) in enumerate(zip(new, old, strict=True))}
    )
    ((claim, differences, outcome),) = judge_claims(scores, [CLAIM])
    assert outcome == expected
    assert differences.values == pytest.approx(tuple(n - o for n, o in zip(new, old, strict=True)))


def test_two_small_positive_differences_are_inconclusive():
    low, high = mean_interval([0.0024, 0.0343])
    assert low < 0 < high
    assert verdict([0.0024, 0.0343]) == INCONCLUSIVE


def test_large_consistent_effect_holds_and_its_mirror_does_not():
    differences = [0.18, 0.10, 0.22]
    assert mean_interval(differences)[0] > 0
    assert verdict(differences) == HELD
    assert mean_interval([-d for d in differences])[1] < 0
    assert verdict([-d for d in differences]) == NOT_HELD


def test_mean_interval_by_hand():
    # d = 1, 3, 5 points: mean 0.03, sample sd 0.02, half-width 0.02 * t / sqrt(3) = 0.049683
    half_width = 0.02 * T_975_2 / math.sqrt(3)
    assert half_width == pytest.approx(0.0496827542, abs=1e-9)
    low, high = mean_interval([0.01, 0.03, 0.05])
    assert low == pytest.approx(0.03 - half_width, abs=1e-9)
    assert high == pytest.approx(0.03 + half_width, abs=1e-9)
    assert verdict([0.01, 0.03, 0.05]) == INCONCLUSIVE  # every seed positive, the interval is not
    # 90%: t_{0.95, 2} = 2.919985580353726 by the same formula at p = 0.95
    low, high = mean_interval([0.01, 0.03, 0.05], confidence=0.90)
    assert low == pytest.approx(0.03 - 0.02 * 2.919985580353726 / math.sqrt(3), abs=1e-9)
    with pytest.raises(ValueError, match="confidence 95"):
        mean_interval([0.01, 0.03], confidence=95)


def test_one_seed_gives_no_interval_and_no_verdict():
    assert mean_interval([0.2]) is None
    assert mean_interval([]) is None
    assert verdict([0.2]) == INCONCLUSIVE


def test_zero_spread_is_a_point_interval():
    assert mean_interval([0.05, 0.05, 0.05]) == pytest.approx((0.05, 0.05))
    assert verdict([0.05, 0.05, 0.05]) == HELD
    assert verdict([-0.05, -0.05]) == NOT_HELD
    assert verdict([0.0, 0.0]) == INCONCLUSIVE


def test_claim_lines_state_the_interval():
    claims = [(CLAIM, Spread((0.01, 0.03, 0.05)), INCONCLUSIVE), (CLAIM, Spread((0.2,)), HELD)]
    rule, _, three_seeds, one_seed = claim_lines(claims, {"new": "new", "old": "old"})
    assert "95% confidence interval of their mean" in rule and "t = 4.30" in rule
    assert three_seeds == (
        "- **inconclusive**: new beats old (the new model helps). Difference in mIoU points: "
        "3.00 ± 2.00 [1.00, 5.00]; 95% interval of the mean [-1.97, 7.97]; "
        "per seed: 1.00, 3.00, 5.00."
    )
    assert "20.00; no interval of the mean from a single seed; per seed: 20.00." in one_seed


def test_spread_formats_mean_std_min_max():
    spread = Spread((0.50, 0.60, 0.70))
    assert spread.mean == pytest.approx(0.60)
    assert spread.std == pytest.approx(0.10)  # sample standard deviation
    assert spread.format() == "60.00 ± 10.00 [50.00, 70.00]"
    assert Spread((0.5,)).format() == "50.00"


def test_member_disagreement_counts_by_hand():
    gt = np.array([[0, 1, 2], [1, 1, 255]])
    a = np.array([[0, 1, 1], [2, 1, 0]])
    b = np.array([[0, 2, 2], [0, 1, 1]])
    merged = np.array([[0, 1, 1], [0, 1, 1]])
    counts = member_disagreement(a, b, merged, gt, ignore_index=255)
    # valid: 5 pixels; a != b at (0,1), (0,2), (1,0) [the ignored (1,2) does not count]
    assert counts == {"pixels": 5, "disagree": 3, "a_right": 1, "b_right": 1, "merged_right": 1}


def test_report_states_rows_claims_and_findings():
    rows = {row.folder: 0.5 for row in DEMO_ROWS}
    scores = scores_for(
        {
            1: {**rows, "student_ft_target_kd": 0.70, "student_target_only": 0.50},
            2: {**rows, "student_ft_target_kd": 0.80, "student_target_only": 0.60},
        }
    )
    judged = judge_claims(scores)
    disagreement = {
        seed: {"pixels": 100, "disagree": 20, "a_right": 5, "b_right": 10, "merged_right": 8}
        for seed in (1, 2)
    }
    kept = {"student_ft_target_kd": {1: 0.74, 2: 0.76}, "student_target_only": {1: 0.5, 2: 0.6}}
    report = render_markdown(scores, judged, disagreement, kept, {"seeds": "1 2"}, {})
    assert_says(
        report,
        "| step 2 (step 1 + KD fine-tuning) | 75.00 ± 7.07 [70.00, 80.00] |",
        "**held**: step 2 (step 1 + KD fine-tuning) beats baseline (KD, target only)",
        "95% interval of the mean [20.00, 20.00]; per seed: 20.00, 20.00.",
        "on 20.00 ± 0.00 [20.00, 20.00]% of the labelled test pixels",
        "baseline (KD, target only) is right on 25.00 ± 0.00",
        "step 2 (step 1 + KD fine-tuning): 75.00 ± 1.41 [74.00, 76.00]%",
        "within the recipe's expected 70.00-80.00%",
        "below the recipe's expected",  # the baseline's 55%
    )


# The rows of the levers against the second domain, per seed: step 1 runs, the step 2 runs after
# them, and the families' ensemble chosen on Val.
DOMAIN_ROWS_SEED_1 = {
    "student_pretrain_all": 0.40,
    "student_pretrain_balanced": 0.45,
    "student_pretrain_matched": 0.41,
    "student_pretrain_partial": 0.30,
    "student_ft_target_kd_from_balanced": 0.65,
    "student_ft_target_kd_from_matched": 0.59,
    "student_ft_target_kd_from_partial": 0.50,
    "student_ft_target_kd_from_best": 0.60,
    "student_pretrain_map_labels": 0.30,
    "student_pretrain_all_from_step0": 0.42,
    "student_ft_target_kd_from_step0": 0.58,
    "families_ensemble_selected": 0.69,
}
DOMAIN_ROWS_SEED_2 = {
    "student_pretrain_all": 0.50,
    "student_pretrain_balanced": 0.55,
    "student_pretrain_matched": 0.49,
    "student_pretrain_partial": 0.40,
    "student_ft_target_kd_from_balanced": 0.75,
    "student_ft_target_kd_from_matched": 0.71,
    "student_ft_target_kd_from_partial": 0.60,
    "student_ft_target_kd_from_best": 0.70,
    "student_pretrain_map_labels": 0.35,
    "student_pretrain_all_from_step0": 0.52,
    "student_ft_target_kd_from_step0": 0.67,
    "families_ensemble_selected": 0.73,
}


def test_ablation_compares_the_families_ensemble_with_each_seeds_best_member():
    from geoseg.evaluation.ablation import (
        ABLATION_CLAIMS,
        BEST_MEMBER,
        DOMAIN_LEVERS,
        add_best_member,
        render_ablation_markdown,
    )

    # seed 1: UPerNet is the best member (0.66), the ensemble beats it by 2 points;
    # seed 2: the FT-UNetFormer is (0.70), the ensemble beats it by 1 point
    scores = scores_for(
        {
            1: {
                "student_ft_target_kd": 0.60,
                "segformer_ft_target_kd": 0.55,
                "upernet_ft_target_kd": 0.66,
                "families_ensemble": 0.68,
                "student_self_training": 0.62,
                "student_ft_target_kd_class_weighted": 0.61,
                "student_ft_target_kd_lovasz": 0.63,
                "student_ft_target_kd_rare_class_crops": 0.58,
                "student_ft_target_kd_classmix": 0.60,
                **DOMAIN_ROWS_SEED_1,
            },
            2: {
                "student_ft_target_kd": 0.70,
                "segformer_ft_target_kd": 0.65,
                "upernet_ft_target_kd": 0.62,
                "families_ensemble": 0.71,
                "student_self_training": 0.69,
                "student_ft_target_kd_class_weighted": 0.69,
                "student_ft_target_kd_lovasz": 0.72,
                "student_ft_target_kd_rare_class_crops": 0.66,
                "student_ft_target_kd_classmix": 0.70,
                **DOMAIN_ROWS_SEED_2,
            },
        }
    )
    best = add_best_member(scores)
    assert best == {1: "upernet_ft_target_kd", 2: "student_ft_target_kd"}
    assert scores[1][BEST_MEMBER]["mIoU"] == 0.66
    judged = judge_claims(scores, ABLATION_CLAIMS)
    domain_claims = len(DOMAIN_LEVERS) + 2  # and step 0 and the selected ensemble: the last claims
    segformer, upernet, ensemble, self_training, *levers = judged[:-domain_claims]
    assert segformer[1].values == pytest.approx((-0.05, -0.05)) and segformer[2] == NOT_HELD
    assert upernet[1].values == pytest.approx((0.06, -0.08)) and upernet[2] == INCONCLUSIVE
    # with two seeds t = 12.71: only near-identical differences decide
    assert ensemble[1].values == pytest.approx((0.02, 0.01)) and ensemble[2] == INCONCLUSIVE
    assert (
        self_training[1].values == pytest.approx((0.02, -0.01)) and self_training[2] == INCONCLUSIVE
    )
    # each lever against step 2 as it is: +1/-1 points, +3/+2, -2/-4, 0/0
    class_weighted, lovasz, rare_class_crops, classmix = levers
    assert class_weighted[1].values == pytest.approx((0.01, -0.01))
    assert class_weighted[2] == INCONCLUSIVE
    assert lovasz[1].values == pytest.approx((0.03, 0.02)) and lovasz[2] == INCONCLUSIVE
    assert rare_class_crops[1].values == pytest.approx((-0.02, -0.04))
    assert rare_class_crops[2] == INCONCLUSIVE
    assert classmix[1].values == pytest.approx((0.0, 0.0)) and classmix[2] == INCONCLUSIVE
    counts = {"pixels": 100, "disagree": 10, "a_right": 5, "b_right": 4, "merged_right": 6}
    disagreement = {"segformer_ft_target_kd": {1: counts, 2: counts}}
    # the levers against the second domain, each step 2 against step 2 as shipped (0.60, 0.70)
    balanced, matched, partial, from_best, step0, selected = judged[-domain_claims:]
    assert balanced[1].values == pytest.approx((0.05, 0.05)) and balanced[2] == HELD
    assert matched[1].values == pytest.approx((-0.01, 0.01)) and matched[2] == INCONCLUSIVE
    assert partial[1].values == pytest.approx((-0.1, -0.1)) and partial[2] == NOT_HELD
    assert from_best[1].values == pytest.approx((0.0, 0.0)) and from_best[2] == INCONCLUSIVE
    # step 2 after step 0 against step 2 as shipped: -2 and -3 points
    assert step0[0].worse == "student_ft_target_kd"
    assert step0[1].values == pytest.approx((-0.02, -0.03)) and step0[2] == INCONCLUSIVE
    assert selected[0].worse == "families_ensemble"
    assert selected[1].values == pytest.approx((0.01, 0.02)) and selected[2] == INCONCLUSIVE
    report = render_ablation_markdown(
        scores, judged, best, disagreement, {"seeds": "1 2"}, lacking_classes=["a", "b"]
    )
    assert_says(
        report,
        "**held**: step 2 after step 1 with domain-balanced batches beats FT-UNetFormer",
        "## The classes the second domain lacks",
        # class a's IoU is the row's mIoU in these entries; class b is scored by no seed
        "- step 1 as shipped: a 45.00 ± 7.07 [40.00, 50.00]; b -",
        "- step 2 after step 1 with domain-balanced batches: a 70.00 ± 7.07",
        "| ensemble of the three families | 69.50 ± 2.12 [68.00, 71.00] |",
        "**inconclusive**: ensemble of the three families beats its best member",
        "1.50 ± 0.71 [1.00, 2.00]; 95% interval of the mean [-4.85, 7.85]; per seed: 2.00, 1.00.",
        "**did not hold**: SegFormer step 2 beats FT-UNetFormer step 2",
        "seed 1: UPerNet step 2, seed 2: FT-UNetFormer step 2",
        "predict different classes on 10.00 ± 0.00 [10.00, 10.00]%",
        "the ensemble on 60.00 ± 0.00 [60.00, 60.00]%",
        "| step 3: FT-UNetFormer self-trained on pseudo-labels | 65.50 ± 4.95",
        "**inconclusive**: step 3: FT-UNetFormer self-trained on pseudo-labels beats",
        "| step 2 + Lovász in place of Dice | 67.50 ± 6.36 [63.00, 72.00] |",
        "**inconclusive**: step 2 + Lovász in place of Dice beats FT-UNetFormer",
        "**inconclusive**: step 2 + rare-class crops beats FT-UNetFormer step 2",
        "| step 0: pretrained on map labels alone | 32.50 ± 3.54 [30.00, 35.00] |",
        "| step 2 after step 0 and step 1 | 62.50 ± 6.36 [58.00, 67.00] |",
        "**inconclusive**: step 2 after step 0 and step 1 beats FT-UNetFormer step 2",
    )
