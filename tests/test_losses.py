"""Losses against hand-computed numbers and invariances (ignored pixels, uniform weights)."""

import functools
import math

import numpy as np
import pytest
import torch

from geoseg.losses import (
    CEDiceLoss,
    CrossEntropyLoss,
    DiceLoss,
    PartialLabelCrossEntropyLoss,
    TruncatedCrossEntropyLoss,
    cross_entropy_loss,
    dice_loss,
    lovasz_softmax_loss,
    partial_label_cross_entropy,
    truncated_cross_entropy,
)

IGNORE = 255


def two_pixel_example() -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel a: softmax (1/4, 3/4), target 1. Pixel b: softmax (1/2, 1/2), target 0."""
    logits = torch.tensor([[[[0.0, 0.0]], [[math.log(3.0), 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    return logits, target


def random_batch(seed: int = 0, num_classes: int = 4):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, num_classes, 5, 6, generator=generator)
    target = torch.randint(0, num_classes, (2, 5, 6), generator=generator)
    target[0, :2] = IGNORE
    target[1, :, 4:] = IGNORE
    return logits, target


def test_cross_entropy_two_pixels():
    logits, target = two_pixel_example()
    expected = (math.log(4 / 3) + math.log(2)) / 2
    assert cross_entropy_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_cross_entropy_class_weights():
    logits, target = two_pixel_example()
    weighted = cross_entropy_loss(logits, target, class_weights=torch.tensor([1.0, 3.0]))
    # Weighted mean: (w1 * ln(4/3) + w0 * ln 2) / (w1 + w0).
    assert weighted.item() == pytest.approx((3 * math.log(4 / 3) + math.log(2)) / 4, rel=1e-6)

    logits, target = random_batch()
    plain = cross_entropy_loss(logits, target)
    uniform = cross_entropy_loss(logits, target, class_weights=torch.full((4,), 2.5))
    assert uniform.item() == pytest.approx(plain.item(), rel=1e-6)


def test_cross_entropy_label_smoothing():
    logits, target = two_pixel_example()
    eps, num_classes = 0.1, 2
    # (1 - eps) * -log p_target + eps / C * sum_c -log p_c, averaged over the two pixels.
    pixel_a = (1 - eps) * math.log(4 / 3) + eps / num_classes * (math.log(4) + math.log(4 / 3))
    pixel_b = (1 - eps) * math.log(2) + eps / num_classes * (2 * math.log(2))
    loss = cross_entropy_loss(logits, target, label_smoothing=eps)
    assert loss.item() == pytest.approx((pixel_a + pixel_b) / 2, rel=1e-6)


def test_cross_entropy_matches_torch_with_weights_and_smoothing():
    logits, target = random_batch()
    weights = torch.tensor([0.5, 1.0, 2.0, 3.0])
    ours = cross_entropy_loss(logits, target, class_weights=weights, label_smoothing=0.2)
    reference = torch.nn.functional.cross_entropy(
        logits, target, weight=weights, ignore_index=IGNORE, label_smoothing=0.2
    )
    assert ours.item() == pytest.approx(reference.item(), rel=1e-6)


# Every loss and its options, for the invariance tests.
LOSSES = {
    "ce": cross_entropy_loss,
    "dice": dice_loss,
    "dice_weighted": functools.partial(dice_loss, class_weights=torch.tensor([1.0, 2.0, 0.5, 1.0])),
    "ce_dice": CEDiceLoss(class_weights=[1.0, 2.0, 0.5, 1.0], label_smoothing=0.1),
    "ce_dice_weighted_lovasz": CEDiceLoss(
        class_weights=[1.0, 2.0, 0.5, 1.0], class_weighted_dice=True, lovasz_weight=0.5
    ),
    "partial": functools.partial(partial_label_cross_entropy, label_sets={7: (1, 3)}),
    "ce_dice_sets": CEDiceLoss(label_sets={7: (1, 3)}, lovasz_weight=0.5),
    "truncated": functools.partial(truncated_cross_entropy, drop_fraction=0.3),
}


@pytest.mark.parametrize("loss_fn", LOSSES.values(), ids=list(LOSSES))
def test_ignored_pixels_change_nothing(loss_fn):
    logits, target = random_batch()
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)

    first = logits.clone().requires_grad_(True)
    loss_first = loss_fn(first, target)
    loss_first.backward()

    changed = logits.clone()
    changed[ignored] = 100.0 * torch.randn(int(ignored.sum()))
    second = changed.requires_grad_(True)
    loss_second = loss_fn(second, target)
    loss_second.backward()

    assert loss_second.item() == pytest.approx(loss_first.item(), rel=1e-6)
    torch.testing.assert_close(first.grad[~ignored], second.grad[~ignored])
    assert torch.all(first.grad[ignored] == 0)


@pytest.mark.parametrize("loss_fn", LOSSES.values(), ids=list(LOSSES))
def test_all_ignored_is_zero_with_zero_grad(loss_fn):
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), IGNORE)
    loss = loss_fn(logits, target)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad == 0)


def test_dice_two_classes_by_hand():
    # Pixel a: p = (1/2, 1/2), target 0; pixel b: p = (3/4, 1/4), target 1; pixel c: ignored.
    logits = torch.tensor([[[[0.0, math.log(3.0), 5.0]], [[0.0, 0.0, -5.0]]]])
    target = torch.tensor([[[0, 1, IGNORE]]])
    s = 0.05
    # class 0: sum(p*t) = 1/2, sum(p) = 1/2 + 3/4, sum(t) = 1
    dice_0 = (2 * 0.5 + s) / (1.25 + 1 + s)
    # class 1: sum(p*t) = 1/4, sum(p) = 1/2 + 1/4, sum(t) = 1
    dice_1 = (2 * 0.25 + s) / (0.75 + 1 + s)
    expected = ((1 - dice_0) + (1 - dice_1)) / 2
    assert dice_loss(logits, target, smooth=s).item() == pytest.approx(expected, rel=1e-6)


def test_dice_averages_over_classes_present_in_target():
    # Pixel a: p = (1/4, 1/4, 1/2), target 0; pixel b: p = (1/2, 1/4, 1/4), target 2.
    # Class 1 is absent from the target and is left out of the mean.
    logits = torch.log(torch.tensor([[1.0, 2.0], [1.0, 1.0], [2.0, 1.0]])).view(1, 3, 1, 2)
    target = torch.tensor([[[0, 2]]])
    s = 0.0
    dice_0 = (2 * 0.25) / (0.75 + 1)  # sum(p*t) = 1/4, sum(p) = 3/4, sum(t) = 1
    dice_2 = (2 * 0.25) / (0.75 + 1)
    expected = ((1 - dice_0) + (1 - dice_2)) / 2
    assert dice_loss(logits, target, smooth=s).item() == pytest.approx(expected, rel=1e-6)


def test_dice_class_weights_two_classes_by_hand():
    # The example of test_dice_two_classes_by_hand with weights w = (1, 3):
    # (w_0 * (1 - dice_0) + w_1 * (1 - dice_1)) / (w_0 + w_1).
    logits = torch.tensor([[[[0.0, math.log(3.0), 5.0]], [[0.0, 0.0, -5.0]]]])
    target = torch.tensor([[[0, 1, IGNORE]]])
    s = 0.05
    dice_0 = (2 * 0.5 + s) / (1.25 + 1 + s)  # = 1.05 / 2.3
    dice_1 = (2 * 0.25 + s) / (0.75 + 1 + s)  # = 0.55 / 1.8
    expected = (1 * (1 - dice_0) + 3 * (1 - dice_1)) / 4
    loss = dice_loss(logits, target, smooth=s, class_weights=torch.tensor([1.0, 3.0]))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_dice_class_weights_leave_out_absent_classes():
    # Pixel a: p = (1/4, 1/4, 1/2), target 0; pixel b: p = (1/2, 1/8, 3/8), target 2; no smoothing.
    # class 0: sum(p*t) = 1/4, sum(p) = 1/4 + 1/2 = 3/4, sum(t) = 1: dice_0 = (1/2) / (7/4) = 2/7
    # class 2: sum(p*t) = 3/8, sum(p) = 1/2 + 3/8 = 7/8, sum(t) = 1: dice_2 = (3/4) / (15/8) = 2/5
    # Class 1 is absent from the target: its weight 100 counts neither above nor below.
    # (2 * (1 - 2/7) + 1 * (1 - 2/5)) / (2 + 1) = (10/7 + 3/5) / 3 = 71/105
    logits = torch.log(torch.tensor([[2.0, 4.0], [2.0, 1.0], [4.0, 3.0]])).view(1, 3, 1, 2)
    target = torch.tensor([[[0, 2]]])
    weights = torch.tensor([2.0, 100.0, 1.0])
    loss = dice_loss(logits, target, smooth=0.0, class_weights=weights)
    assert loss.item() == pytest.approx(71 / 105, rel=1e-6)
    # Unweighted: ((1 - 2/7) + (1 - 2/5)) / 2 = 46/70
    assert dice_loss(logits, target, smooth=0.0).item() == pytest.approx(46 / 70, rel=1e-6)


def test_dice_uniform_class_weights_equal_unweighted():
    logits, target = random_batch()
    plain = dice_loss(logits, target)
    torch.testing.assert_close(dice_loss(logits, target, class_weights=torch.ones(4)), plain)
    torch.testing.assert_close(
        dice_loss(logits, target, class_weights=torch.full((4,), 2.5)), plain
    )


def test_dice_class_weights_of_present_classes_all_zero():
    logits, target = random_batch()
    target[target == 0] = 1  # class 0 absent: only its weight is non-zero
    x = logits.clone().requires_grad_(True)
    loss = dice_loss(x, target, class_weights=torch.tensor([1.0, 0.0, 0.0, 0.0]))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(x.grad == 0)


def test_dice_class_weights_of_the_wrong_shape():
    logits, target = random_batch()
    with pytest.raises(ValueError, match="class_weights"):
        dice_loss(logits, target, class_weights=torch.ones(3))


def test_dice_perfect_prediction_is_zero():
    target = torch.randint(0, 4, (2, 8, 8))
    target[0, 0] = IGNORE
    logits = 50.0 * torch.nn.functional.one_hot(target.clamp(max=3), 4).permute(0, 3, 1, 2).float()
    assert dice_loss(logits, target).item() == pytest.approx(0.0, abs=1e-6)


def test_modules_match_functions():
    logits, target = random_batch()
    weights = torch.tensor([1.0, 2.0, 3.0, 4.0])
    ce = CrossEntropyLoss(class_weights=weights, label_smoothing=0.1)
    assert ce(logits, target).item() == pytest.approx(
        cross_entropy_loss(logits, target, class_weights=weights, label_smoothing=0.1).item()
    )
    assert DiceLoss(smooth=0.5)(logits, target).item() == pytest.approx(
        dice_loss(logits, target, smooth=0.5).item()
    )
    # Weights are a buffer (they follow .to()) but not saved: they come from the config.
    assert "class_weights" in dict(ce.named_buffers())
    assert "class_weights" not in ce.state_dict()
    assert ce.to(torch.float64).class_weights.dtype == torch.float64

    dice = DiceLoss(smooth=0.5, class_weights=[1.0, 2.0, 3.0, 4.0])
    assert dice(logits, target).item() == pytest.approx(
        dice_loss(logits, target, smooth=0.5, class_weights=weights).item()
    )
    assert "class_weights" in dict(dice.named_buffers())
    assert "class_weights" not in dice.state_dict()
    assert DiceLoss().class_weights is None


def test_ce_dice_with_aux_output():
    logits, target = random_batch(seed=1)
    aux_logits, _ = random_batch(seed=2)
    loss = CEDiceLoss(ce_weight=0.5, dice_weight=2.0)
    main = 0.5 * cross_entropy_loss(logits, target) + 2.0 * dice_loss(logits, target)
    assert loss(logits, target).item() == pytest.approx(main.item(), rel=1e-6)
    expected = main + 0.4 * cross_entropy_loss(aux_logits, target)
    assert loss((logits, aux_logits), target).item() == pytest.approx(expected.item(), rel=1e-6)


def test_ce_dice_class_weighted_dice():
    logits, target = random_batch(seed=3)
    weights = torch.tensor([1.0, 2.0, 0.5, 3.0])
    loss = CEDiceLoss(class_weights=weights, class_weighted_dice=True, ce_weight=0.5)
    expected = 0.5 * cross_entropy_loss(logits, target, class_weights=weights) + dice_loss(
        logits, target, class_weights=weights
    )
    torch.testing.assert_close(loss(logits, target), expected)
    # By default the weights reach the cross-entropy only.
    default = CEDiceLoss(class_weights=weights, ce_weight=0.5)
    expected = 0.5 * cross_entropy_loss(logits, target, class_weights=weights) + dice_loss(
        logits, target
    )
    assert torch.equal(default(logits, target), expected)


@pytest.mark.parametrize("name", ["ce_weight", "dice_weight", "aux_weight", "lovasz_weight"])
def test_ce_dice_rejects_negative_weights(name):
    with pytest.raises(ValueError, match=name):
        CEDiceLoss(**{name: -0.1})
    with pytest.raises(ValueError, match=name):
        CEDiceLoss(**{name: float("nan")})


def test_ce_dice_rejects_inconsistent_options():
    with pytest.raises(ValueError, match="class_weighted_dice"):
        CEDiceLoss(class_weighted_dice=True)
    with pytest.raises(ValueError, match="all 0"):
        CEDiceLoss(ce_weight=0.0, dice_weight=0.0)


def test_bf16_logits_give_float32_loss():
    logits, target = random_batch()
    loss = CEDiceLoss(class_weights=[1.0, 2.0, 0.5, 1.0])
    reference = loss(logits, target)
    low_precision = loss(logits.bfloat16(), target)
    assert low_precision.dtype == torch.float32
    assert low_precision.item() == pytest.approx(reference.item(), rel=2e-2)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="spatial size"):
        cross_entropy_loss(torch.randn(1, 3, 4, 4), torch.zeros(1, 5, 5, dtype=torch.long))


# --- partial labels (label sets) -----------------------------------------------------------------


def batch_with_sets(seed: int = 0):
    """random_batch with some pixels of the set id 7 = {1, 3}: (logits, target)."""
    logits, target = random_batch(seed)
    generator = torch.Generator().manual_seed(seed + 100)
    in_set = (torch.rand(target.shape, generator=generator) < 0.3) & (target != IGNORE)
    return logits, target.masked_fill(in_set, 7)


def test_partial_label_cross_entropy_by_hand():
    # Three classes; pixel a: the set 5 = {0, 1}; pixel b: class 2; pixel c: ignored.
    scores = np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5], [3.0, 3.0, 3.0]])  # (pixel, class)
    logits = torch.tensor(scores.T, dtype=torch.float32).reshape(1, 3, 1, 3)
    target = torch.tensor([[[5, 2, IGNORE]]])
    softmax = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    pixel_a = -math.log(softmax[0, 0] + softmax[0, 1])
    pixel_b = -math.log(softmax[1, 2])
    loss = partial_label_cross_entropy(logits, target, {5: (0, 1)})
    assert loss.item() == pytest.approx((pixel_a + pixel_b) / 2, rel=1e-6)


def test_a_set_of_one_class_is_plain_cross_entropy():
    logits, target = random_batch(seed=4)
    as_set = target.masked_fill(target == 2, 9)  # class 2 written as the set 9 = {2}
    ours_logits = logits.clone().requires_grad_(True)
    torch_logits = logits.clone().requires_grad_(True)
    ours = partial_label_cross_entropy(ours_logits, as_set, {9: (2,)})
    reference = torch.nn.functional.cross_entropy(torch_logits, target, ignore_index=IGNORE)
    ours.backward()
    reference.backward()
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(ours_logits.grad, torch_logits.grad)


def test_a_set_of_every_class_costs_nothing():
    logits = torch.randn(2, 4, 3, 5, requires_grad=True)
    target = torch.full((2, 3, 5), 6)
    target[0, 0, 0] = IGNORE
    loss = partial_label_cross_entropy(logits, target, {6: (0, 1, 2, 3)})
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


def test_a_set_of_every_class_only_adds_to_the_pixel_count():
    logits, target = random_batch(seed=5)
    everything = target.clone()
    everything[0, 2:, :3] = 6  # previously labelled pixels, now "any class"
    labelled = (target != IGNORE) & (everything != 6)
    plain = cross_entropy_loss(logits, target.masked_fill(~labelled, IGNORE))
    ours = partial_label_cross_entropy(logits, everything, {6: (0, 1, 2, 3)})
    expected = plain * labelled.sum() / (everything != IGNORE).sum()
    torch.testing.assert_close(ours, expected)


def test_empty_label_sets_give_the_plain_loss_bit_for_bit():
    logits, target = random_batch(seed=6)
    aux_logits, _ = random_batch(seed=7)
    assert torch.equal(
        partial_label_cross_entropy(logits, target, {}), cross_entropy_loss(logits, target)
    )
    for options in ({}, {"lovasz_weight": 0.5, "aux_weight": 0.4}):
        old = CEDiceLoss(**options)
        for label_sets in ({}, None):
            new = CEDiceLoss(label_sets=label_sets, **options)
            assert torch.equal(new(logits, target), old(logits, target))
            assert torch.equal(new((logits, aux_logits), target), old((logits, aux_logits), target))


def test_ce_dice_with_label_sets_is_partial_ce_plus_dice_without_set_pixels():
    logits, target = batch_with_sets(seed=8)
    aux_logits, _ = random_batch(seed=9)
    label_sets = {7: (1, 3)}
    single = target.masked_fill(target == 7, IGNORE)
    loss = CEDiceLoss(label_sets=label_sets, ce_weight=0.5, dice_weight=2.0, lovasz_weight=0.3)
    expected = (
        0.5 * partial_label_cross_entropy(logits, target, label_sets)
        + 2.0 * dice_loss(logits, single)
        + 0.3 * lovasz_softmax_loss(logits, single)
    )
    torch.testing.assert_close(loss(logits, target), expected)
    expected = expected + 0.4 * partial_label_cross_entropy(aux_logits, target, label_sets)
    torch.testing.assert_close(loss((logits, aux_logits), target), expected)
    module = PartialLabelCrossEntropyLoss(label_sets)
    assert torch.equal(
        module(logits, target), partial_label_cross_entropy(logits, target, label_sets)
    )


def test_partial_label_loss_is_float32_for_bf16_logits():
    logits, target = batch_with_sets(seed=10)
    reference = partial_label_cross_entropy(logits, target, {7: (1, 3)})
    low_precision = partial_label_cross_entropy(logits.bfloat16(), target, {7: (1, 3)})
    assert low_precision.dtype == torch.float32
    assert low_precision.item() == pytest.approx(reference.item(), rel=2e-2)


def test_partial_label_loss_is_stable_for_large_logits():
    logits = torch.tensor([[[[1000.0]], [[-1000.0]], [[0.0]]]])  # (1, 3, 1, 1)
    target = torch.tensor([[[5]]])
    loss = partial_label_cross_entropy(logits, target, {5: (1, 2)})
    assert loss.item() == pytest.approx(1000.0, rel=1e-6)  # -log softmax_2 = 1000 + log(1 + ...)


def test_an_unknown_target_id_is_not_silent():
    logits, target = random_batch(seed=11)
    target[0, 3, 3] = 8  # neither a class (0..3), the set id 7 nor ignore
    assert partial_label_cross_entropy(logits, target, {7: (1, 3)}).item() == float("inf")


def test_label_sets_that_do_not_fit_are_errors():
    logits, target = batch_with_sets()
    with pytest.raises(ValueError, match="label set id 2 is a class id"):
        partial_label_cross_entropy(logits, target, {2: (0, 1)})
    with pytest.raises(ValueError, match="names \\[5\\], not class ids"):
        partial_label_cross_entropy(logits, target, {7: (1, 5)})
    with pytest.raises(ValueError, match="ignore id"):
        CEDiceLoss(label_sets={255: (0, 1)})
    with pytest.raises(ValueError, match="empty"):
        CEDiceLoss(label_sets={7: ()})
    with pytest.raises(ValueError, match="class_weights with label_sets is not supported"):
        CEDiceLoss(label_sets={7: (1, 3)}, class_weights=[1.0, 2.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="label_smoothing"):
        CEDiceLoss(label_sets={7: (1, 3)}, label_smoothing=0.1)


# --- truncated cross-entropy (weak labels) --------------------------------------------------------


def two_by_two_example() -> tuple[torch.Tensor, torch.Tensor]:
    """One 2x2 image, two classes, every pixel labelled 0. Pixel losses -log softmax_0:
    (0, 0) -> ln 2, (0, ln 3) -> ln 4, (ln 3, 0) -> ln 4/3, (0, ln 7) -> ln 8."""
    scores = [[0.0, 0.0], [0.0, math.log(3)], [math.log(3), 0.0], [0.0, math.log(7)]]
    logits = torch.tensor(scores).T.reshape(1, 2, 2, 2)
    return logits, torch.zeros(1, 2, 2, dtype=torch.long)


@pytest.mark.parametrize(
    ("drop_fraction", "kept", "expected"),
    [
        (0.25, [True, True, True, False], math.log(32 / 3) / 3),  # k = 1: ln 8 dropped
        (0.5, [True, False, True, False], math.log(8 / 3) / 2),  # k = 2: ln 8 and ln 4
        (0.7, [True, False, True, False], math.log(8 / 3) / 2),  # k = floor(2.8) = 2
    ],
)
def test_truncated_cross_entropy_drops_the_k_highest_losses_by_hand(drop_fraction, kept, expected):
    logits, target = two_by_two_example()
    logits.requires_grad_(True)
    loss = truncated_cross_entropy(logits, target, drop_fraction)
    loss.backward()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    # gradients reach the kept pixels alone
    has_gradient = (logits.grad != 0).any(dim=1).flatten()
    assert has_gradient.tolist() == kept


def test_truncated_cross_entropy_never_counts_ignored_pixels():
    logits, target = two_by_two_example()
    target[0, 1, 1] = IGNORE  # the ln 8 pixel: n = 3, k = floor(0.5 * 3) = 1 drops ln 4
    logits.requires_grad_(True)
    loss = truncated_cross_entropy(logits, target, 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(math.log(8 / 3) / 2, rel=1e-6)
    assert (logits.grad != 0).any(dim=1).flatten().tolist() == [True, False, True, False]


def test_truncated_cross_entropy_matches_a_per_pixel_reference():
    logits, target = random_batch(seed=5)
    pixel_losses = torch.nn.functional.cross_entropy(
        logits, target, ignore_index=IGNORE, reduction="none"
    )
    labelled = sorted(pixel_losses[target != IGNORE].tolist(), reverse=True)
    dropped = math.floor(0.3 * len(labelled))
    expected = sum(labelled[dropped:]) / (len(labelled) - dropped)
    assert truncated_cross_entropy(logits, target, 0.3).item() == pytest.approx(expected, rel=1e-6)


def test_truncated_cross_entropy_of_zero_is_plain_cross_entropy_bit_for_bit():
    logits, target = random_batch(seed=6)
    assert torch.equal(
        truncated_cross_entropy(logits, target, 0.0), cross_entropy_loss(logits, target)
    )


def test_truncated_cross_entropy_counts_exact_shares_and_breaks_ties_by_pixel_order():
    # 100 equal losses: floor(0.29 * 100) is 29 (not 28, as 0.29 * 100 gives in binary), and the
    # first 29 pixels in order are the ones dropped, on every call.
    logits = torch.zeros(1, 3, 10, 10, requires_grad=True)
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    for _ in range(2):
        logits.grad = None
        truncated_cross_entropy(logits, target, 0.29).backward()
        has_gradient = (logits.grad != 0).any(dim=1).flatten()
        assert has_gradient.tolist() == [False] * 29 + [True] * 71


def test_truncated_loss_is_plain_cross_entropy_during_warm_up_and_in_eval_mode():
    logits, target = random_batch(seed=7)
    loss = TruncatedCrossEntropyLoss(drop_fraction=0.3, warmup_epochs=2)
    plain = cross_entropy_loss(logits, target)
    truncated = truncated_cross_entropy(logits, target, 0.3)
    assert truncated.item() < plain.item()
    for epoch, expected in [(0, plain), (1, plain), (2, truncated), (5, truncated)]:
        loss.set_epoch(epoch)
        assert torch.equal(loss(logits, target), expected), epoch
    loss.eval()  # validation: the plain loss on the real labels
    assert torch.equal(loss(logits, target), plain)


def test_truncated_loss_is_float32_for_bf16_logits():
    logits, target = random_batch(seed=8)
    low_precision = truncated_cross_entropy(logits.bfloat16(), target, 0.3)
    assert low_precision.dtype == torch.float32
    reference = truncated_cross_entropy(logits, target, 0.3)
    assert low_precision.item() == pytest.approx(reference.item(), rel=2e-2)


@pytest.mark.parametrize("bad", [1.0, -0.1, float("nan")])
def test_truncated_loss_rejects_a_share_outside_0_1(bad):
    with pytest.raises(ValueError, match=r"drop_fraction=.*expected a share in \[0, 1\)"):
        TruncatedCrossEntropyLoss(drop_fraction=bad)
    with pytest.raises(ValueError, match="drop_fraction"):
        truncated_cross_entropy(*random_batch(), bad)
    with pytest.raises(ValueError, match="warmup_epochs=-1"):
        TruncatedCrossEntropyLoss(warmup_epochs=-1)
