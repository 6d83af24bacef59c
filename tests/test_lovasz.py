"""Lovász-softmax against an independent reference (the level-set integral), hand-worked values,
and the invariances the other losses keep (ignored pixels, all ignored, float32)."""

import itertools

import numpy as np
import pytest
import torch

from geoseg.losses import (
    CEDiceLoss,
    LovaszSoftmaxLoss,
    cross_entropy_loss,
    dice_loss,
    lovasz_softmax_loss,
)

IGNORE = 255


# --- independent reference ------------------------------------------------------------------------


def level_set_jaccard(errors: np.ndarray, fg: np.ndarray) -> float:
    """Lovász extension of the Jaccard loss as an integral over level sets, in float64.

    f(m) = integral over t in [0, 1] of Delta({i : m_i >= t}) dt with Delta(M) = |M| / |G ∪ M|
    (Delta(empty set) = 0), G = the pixels where ``fg``. Between two neighbouring distinct values
    of m the level set does not change, so the integral is an exact finite sum.
    """
    levels = sorted(set(errors.tolist()) | {0.0}, reverse=True)
    total = 0.0
    for upper, lower in itertools.pairwise(levels):
        mispredicted = errors >= upper  # the level set for every t in (lower, upper]
        size = int(mispredicted.sum())
        if size:
            total += (upper - lower) * size / int((fg | mispredicted).sum())
    return total


def reference_lovasz(logits, target, classes="present", per_image=False) -> float:
    """Lovász-softmax from ``level_set_jaccard``: numpy, float64, ignored pixels dropped."""
    logits = logits.double().numpy()
    target = target.numpy()
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    probs = shifted / shifted.sum(axis=1, keepdims=True)  # (B, C, H, W)
    num_classes = probs.shape[1]
    pixels = probs.transpose(0, 2, 3, 1).reshape(target.shape[0], -1, num_classes)
    labels = target.reshape(target.shape[0], -1)
    groups = (
        [(pixels[b], labels[b]) for b in range(len(labels))]
        if per_image
        else [(pixels.reshape(-1, num_classes), labels.reshape(-1))]
    )
    group_losses = []
    for group_probs, group_labels in groups:
        valid = group_labels != IGNORE
        if not valid.any():
            continue
        group_probs, group_labels = group_probs[valid], group_labels[valid]
        losses = []
        for c in range(num_classes):
            fg = group_labels == c
            if classes == "present" and not fg.any():
                continue
            losses.append(level_set_jaccard(np.abs(fg - group_probs[:, c]), fg))
        group_losses.append(sum(losses) / len(losses))
    return sum(group_losses) / len(group_losses) if group_losses else 0.0


def random_case(shape, seed, ignore_fraction=0.0, ties=False):
    generator = torch.Generator().manual_seed(seed)
    batch, num_classes, height, width = shape
    if ties:  # few distinct logits: many equal errors
        logits = torch.randint(-1, 2, shape, generator=generator).float()
    else:
        logits = 2.0 * torch.randn(shape, generator=generator)
    target = torch.randint(0, num_classes, (batch, height, width), generator=generator)
    ignored = torch.rand(target.shape, generator=generator) < ignore_fraction
    return logits, target.masked_fill(ignored, IGNORE)


@pytest.mark.parametrize("per_image", [False, True], ids=["batch", "per_image"])
@pytest.mark.parametrize("classes", ["present", "all"])
@pytest.mark.parametrize(
    ("shape", "seed", "ignore_fraction", "ties"),
    [
        ((1, 3, 2, 2), 0, 0.0, False),
        ((2, 4, 3, 3), 1, 0.0, False),
        ((2, 4, 3, 3), 2, 0.3, False),
        ((3, 5, 4, 2), 3, 0.2, True),
    ],
    ids=["1x3x2x2", "2x4x3x3", "2x4x3x3-ignore", "3x5x4x2-ties"],
)
def test_matches_level_set_integral(shape, seed, ignore_fraction, ties, classes, per_image):
    logits, target = random_case(shape, seed, ignore_fraction, ties)
    loss = lovasz_softmax_loss(logits, target, classes=classes, per_image=per_image)
    expected = reference_lovasz(logits, target, classes=classes, per_image=per_image)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_gradient_matches_finite_differences_of_the_reference():
    logits, target = random_case((2, 3, 2, 3), seed=4, ignore_fraction=0.2)
    x = logits.clone().requires_grad_(True)
    lovasz_softmax_loss(x, target).backward()
    step = 1e-6
    numeric = torch.zeros_like(logits, dtype=torch.float64)
    for index in np.ndindex(*logits.shape):
        plus, minus = logits.double().clone(), logits.double().clone()
        plus[index] += step
        minus[index] -= step
        numeric[index] = (reference_lovasz(plus, target) - reference_lovasz(minus, target)) / (
            2 * step
        )
    torch.testing.assert_close(x.grad.double(), numeric, atol=2e-5, rtol=0)


# --- hand-worked values ---------------------------------------------------------------------------


def hand_example() -> tuple[torch.Tensor, torch.Tensor]:
    """2x2 image, 2 classes; p(class 1) = [[0.2, 0.6], [0.9, 0.7]], target [[0, 1], [1, 0]]."""
    p1 = torch.tensor([[0.2, 0.6], [0.9, 0.7]])
    logits = torch.stack([torch.zeros(2, 2), torch.log(p1 / (1 - p1))]).unsqueeze(0)
    return logits, torch.tensor([[[0, 1], [1, 0]]])


def test_two_by_two_by_hand():
    # Pixels a, b, c, d = (0,0), (0,1), (1,0), (1,1); p1 = .2, .6, .9, .7; targets 0, 1, 1, 0.
    # With two classes |[y = 0] - p0| = |[y = 1] - p1|, so both classes have the errors
    # a .2, b .4, c .1, d .7, sorted d > b > a > c. Delta(M) = |M| / |G ∪ M| over the prefixes:
    # class 1, G = {b, c}: {d} 1/3, {d,b} 2/3, {d,b,a} 3/4, {d,b,a,c} 4/4
    #   loss_1 = .7 * 1/3 + .4 * (2/3 - 1/3) + .2 * (3/4 - 2/3) + .1 * (1 - 3/4)
    #          = 44/120 + 2/120 + 3/120 = 49/120
    # class 0, G = {a, d}: {d} 1/2, {d,b} 2/3, {d,b,a} 3/3, {d,b,a,c} 4/4
    #   loss_0 = .7 * 1/2 + .4 * (2/3 - 1/2) + .2 * (1 - 2/3) + .1 * 0 = 29/60
    # mean = (49/120 + 58/120) / 2 = 107/240
    logits, target = hand_example()
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(107 / 240, abs=1e-7)


def hard_logits(prediction: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Logits +-1e4: softmax is exactly one-hot in float32 (exp(-2e4) underflows to 0)."""
    onehot = torch.nn.functional.one_hot(prediction, num_classes).permute(0, 3, 1, 2).float()
    return 1e4 * (2.0 * onehot - 1.0)


def test_hard_predictions_give_one_minus_iou():
    # At 0/1 errors the Lovász extension is Delta(M) itself: 1 - IoU of the class.
    target = torch.tensor([[[0, 0, 1], [1, 2, 2]]])
    prediction = torch.tensor([[[0, 1, 1], [1, 2, 3]]])
    logits = hard_logits(prediction, 4)
    assert torch.equal(
        logits.softmax(1), torch.nn.functional.one_hot(prediction, 4).permute(0, 3, 1, 2).float()
    )
    # class 0: target {(0,0), (0,1)}, predicted {(0,0)}: IoU 1/2
    # class 1: target {(0,2), (1,0)}, predicted {(0,1), (0,2), (1,0)}: IoU 2/3
    # class 2: target {(1,1), (1,2)}, predicted {(1,1)}: IoU 1/2
    # class 3: absent from the target, predicted {(1,2)}: IoU 0
    present = ((1 - 1 / 2) + (1 - 2 / 3) + (1 - 1 / 2)) / 3  # 4/9
    every = ((1 - 1 / 2) + (1 - 2 / 3) + (1 - 1 / 2) + (1 - 0)) / 4  # 7/12
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(present, abs=1e-7)
    assert lovasz_softmax_loss(logits, target, classes="all").item() == pytest.approx(
        every, abs=1e-7
    )
    perfect = hard_logits(target, 4)
    assert lovasz_softmax_loss(perfect, target).item() == 0.0
    # "all": a class absent from the target costs its largest probability (here 0).
    assert lovasz_softmax_loss(perfect, target, classes="all").item() == 0.0


def test_per_image_and_batch_differ_by_hand():
    # Image 1: the 2x2 example above (107/240 alone). Image 2: four pixels of class 0, predicted
    # class 0 with probability 1 (errors 0 for both classes; its own loss is 0).
    # per_image: (107/240 + 0) / 2 = 107/480.
    # batch: the zero errors come last in the order and add 4 pixels to G_0:
    # class 0, G = {a, d, e1..e4}: {d} 1/6, {d,b} 2/7, {d,b,a} 3/7, {d,b,a,c} 4/8, then unchanged
    #   loss_0 = .7/6 + .4 * (2/7 - 1/6) + .2 * (3/7 - 2/7) + .1 * (1/2 - 3/7)
    #          = (49 + 20 + 12 + 3) / 420 = 1/5
    # class 1, G = {b, c}: the prefixes up to c are as before, so loss_1 = 49/120
    # batch = (1/5 + 49/120) / 2 = 73/240.
    logits_1, target_1 = hand_example()
    logits_2 = hard_logits(torch.zeros(1, 2, 2, dtype=torch.long), 2)
    logits = torch.cat([logits_1, logits_2])
    target = torch.cat([target_1, torch.zeros(1, 2, 2, dtype=torch.long)])
    assert lovasz_softmax_loss(logits, target, per_image=True).item() == pytest.approx(
        107 / 480, abs=1e-7
    )
    assert lovasz_softmax_loss(logits, target).item() == pytest.approx(73 / 240, abs=1e-7)


def test_per_image_skips_images_without_valid_pixels():
    logits, target = random_case((3, 4, 3, 3), seed=5)
    target[1] = IGNORE
    keep = torch.tensor([0, 2])
    loss = lovasz_softmax_loss(logits, target, per_image=True)
    alone = lovasz_softmax_loss(logits[keep], target[keep], per_image=True)
    assert loss.item() == pytest.approx(alone.item(), abs=1e-7)


# --- ignored pixels -------------------------------------------------------------------------------


def test_ignored_pixels_are_left_out():
    logits, target = random_case((2, 4, 5, 6), seed=6, ignore_fraction=0.3)
    valid = target != IGNORE
    # Only the valid pixels, as one 1 x N image.
    valid_logits = logits.permute(1, 0, 2, 3)[:, valid].unsqueeze(0).unsqueeze(2)  # (1, C, 1, N)
    valid_target = target[valid].view(1, 1, -1)
    for classes in ("present", "all"):
        loss = lovasz_softmax_loss(logits, target, classes=classes)
        alone = lovasz_softmax_loss(valid_logits, valid_target, classes=classes)
        assert loss.item() == pytest.approx(alone.item(), abs=1e-6)


@pytest.mark.parametrize("per_image", [False, True], ids=["batch", "per_image"])
def test_ignored_logits_change_nothing(per_image):
    logits, target = random_case((2, 4, 5, 6), seed=7, ignore_fraction=0.3)
    ignored = (target == IGNORE).unsqueeze(1).expand_as(logits)

    first = logits.clone().requires_grad_(True)
    loss_first = lovasz_softmax_loss(first, target, per_image=per_image)
    loss_first.backward()

    changed = logits.clone()
    changed[ignored] = 100.0 * torch.randn(int(ignored.sum()))
    second = changed.requires_grad_(True)
    loss_second = lovasz_softmax_loss(second, target, per_image=per_image)
    loss_second.backward()

    assert loss_second.item() == loss_first.item()
    torch.testing.assert_close(first.grad[~ignored], second.grad[~ignored])
    assert torch.all(first.grad[ignored] == 0)
    assert torch.all(second.grad[ignored] == 0)


@pytest.mark.parametrize("per_image", [False, True], ids=["batch", "per_image"])
@pytest.mark.parametrize("classes", ["present", "all"])
def test_all_ignored_is_zero_with_zero_grad(classes, per_image):
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    target = torch.full((2, 3, 3), IGNORE)
    loss = lovasz_softmax_loss(logits, target, classes=classes, per_image=per_image)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()
    assert torch.all(logits.grad == 0)


# --- module, dtype, errors ------------------------------------------------------------------------


def test_module_matches_function():
    logits, target = random_case((2, 4, 5, 6), seed=8, ignore_fraction=0.2)
    module = LovaszSoftmaxLoss(classes="all", per_image=True)
    expected = lovasz_softmax_loss(logits, target, classes="all", per_image=True)
    assert torch.equal(module(logits, target), expected)
    assert torch.equal(LovaszSoftmaxLoss()(logits, target), lovasz_softmax_loss(logits, target))
    # No state for checkpoints, and no auxiliary head for the training module to feed it.
    assert module.state_dict() == {}
    assert getattr(module, "aux_weight", 0) == 0


def test_module_rejects_a_tuple_and_bad_options():
    logits, target = random_case((1, 3, 2, 2), seed=9)
    with pytest.raises(ValueError, match="logits tensor"):
        LovaszSoftmaxLoss()((logits, logits), target)
    with pytest.raises(ValueError, match="classes"):
        LovaszSoftmaxLoss(classes="some")
    with pytest.raises(ValueError, match="classes"):
        lovasz_softmax_loss(logits, target, classes="some")
    with pytest.raises(ValueError, match="spatial size"):
        lovasz_softmax_loss(logits, torch.zeros(1, 3, 3, dtype=torch.long))


def test_bf16_logits_give_float32_loss():
    logits, target = random_case((2, 4, 5, 6), seed=10, ignore_fraction=0.2)
    reference = lovasz_softmax_loss(logits, target)
    low_precision = lovasz_softmax_loss(logits.bfloat16(), target)
    assert low_precision.dtype == torch.float32
    assert low_precision.item() == pytest.approx(reference.item(), rel=2e-2)


def test_large_batch_stays_finite_and_matches_the_reference_formula():
    # Many pixels: the Jaccard steps are O(1/N) and must stay accurate in float32.
    logits, target = random_case((2, 3, 96, 96), seed=11, ignore_fraction=0.1)
    x = logits.clone().requires_grad_(True)
    loss = lovasz_softmax_loss(x, target)
    loss.backward()
    assert torch.isfinite(x.grad).all()
    x64 = logits.double().requires_grad_(True)
    probs = x64.softmax(1).permute(0, 2, 3, 1).reshape(-1, 3)
    labels = target.reshape(-1)
    probs, labels = probs[labels != IGNORE], labels[labels != IGNORE]
    per_class = []
    for c in range(3):
        fg = (labels == c).double()
        errors, order = (fg - probs[:, c]).abs().sort(descending=True)
        gt = fg[order]
        jaccard = 1 - (gt.sum() - gt.cumsum(0)) / (gt.sum() + (1 - gt).cumsum(0))
        steps = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
        per_class.append((errors * steps).sum())
    expected = torch.stack(per_class).mean()
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)
    # (The textbook float32 form, jaccard[1:] - jaccard[:-1], is off by about 1e-8 here.)
    torch.testing.assert_close(x.grad.double(), x64.grad, rtol=1e-4, atol=5e-9)


# --- inside CEDiceLoss ----------------------------------------------------------------------------


def test_ce_dice_default_is_unchanged():
    logits, target = random_case((2, 4, 5, 6), seed=12, ignore_fraction=0.2)
    aux_logits, _ = random_case((2, 4, 5, 6), seed=13)
    loss = CEDiceLoss()
    main = cross_entropy_loss(logits, target) + dice_loss(logits, target)
    assert torch.equal(loss(logits, target), main)
    expected = main + 0.4 * cross_entropy_loss(aux_logits, target)
    assert torch.equal(loss((logits, aux_logits), target), expected)


def test_ce_dice_with_lovasz_term():
    logits, target = random_case((2, 4, 5, 6), seed=14, ignore_fraction=0.2)
    aux_logits, _ = random_case((2, 4, 5, 6), seed=15)
    weights = torch.tensor([1.0, 2.0, 0.5, 1.0])
    loss = CEDiceLoss(lovasz_weight=0.7, class_weights=weights)
    main = (
        cross_entropy_loss(logits, target, class_weights=weights)
        + dice_loss(logits, target)
        + 0.7 * lovasz_softmax_loss(logits, target)
    )
    torch.testing.assert_close(loss(logits, target), main)
    # The auxiliary head stays cross-entropy only.
    expected = main + 0.4 * cross_entropy_loss(aux_logits, target, class_weights=weights)
    torch.testing.assert_close(loss((logits, aux_logits), target), expected)

    lovasz_only = CEDiceLoss(ce_weight=0.0, dice_weight=0.0, lovasz_weight=1.0)
    torch.testing.assert_close(lovasz_only(logits, target), lovasz_softmax_loss(logits, target))


def test_ce_dice_zero_weights_are_not_computed(monkeypatch):
    logits, target = random_case((2, 4, 5, 6), seed=16)

    def must_not_run(*args, **kwargs):
        raise AssertionError("a term with weight 0 was computed")

    default = CEDiceLoss()
    monkeypatch.setattr(default.lovasz, "forward", must_not_run)
    default(logits, target)

    lovasz_only = CEDiceLoss(ce_weight=0.0, dice_weight=0.0, lovasz_weight=0.5)
    monkeypatch.setattr(lovasz_only.ce, "forward", must_not_run)
    monkeypatch.setattr(lovasz_only.dice, "forward", must_not_run)
    expected = 0.5 * lovasz_softmax_loss(logits, target)
    torch.testing.assert_close(lovasz_only(logits, target), expected)


@pytest.mark.parametrize("loss_fn", [lovasz_softmax_loss, CEDiceLoss(lovasz_weight=0.5)])
def test_all_ignored_through_modules(loss_fn):
    logits = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = loss_fn(logits, torch.full((2, 3, 3), IGNORE))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.all(logits.grad == 0)


def test_hand_example_value_in_ce_dice():
    # The Lovász term of CEDiceLoss is the batch, present-classes loss: 107/240 on the example.
    logits, target = hand_example()
    loss = CEDiceLoss(ce_weight=0.0, dice_weight=0.0, lovasz_weight=2.0)
    assert loss(logits, target).item() == pytest.approx(2 * 107 / 240, abs=1e-6)
