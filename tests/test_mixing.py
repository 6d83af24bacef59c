"""Batch mixing (CutMix, ClassMix, MixUp): which pixels move, the MixUp loss, reproducibility."""

import math

import pytest
import torch

from geoseg.datasets import (
    IGNORE_INDEX,
    MIXUP_TARGET,
    MIXUP_WEIGHT,
    BatchMix,
    ClassMix,
    CutMix,
    MixUp,
    ignore_mask,
    mixed_loss,
)
from geoseg.losses import CEDiceLoss

B, C, H, W = 4, 3, 24, 20


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _batch(
    channels: int = C, dtype: torch.dtype = torch.float32, scale: float = 1.0, seed: int = 1
) -> dict:
    """Images whose values name (sample, y, x, band) uniquely; masks of several classes, with
    ignore pixels, different in every sample."""
    b = torch.arange(B).view(B, 1, 1, 1)
    c = torch.arange(channels).view(1, channels, 1, 1)
    y = torch.arange(H).view(1, 1, H, 1)
    x = torch.arange(W).view(1, 1, 1, W)
    img = ((b * 10000 + y * 100 + x + c * 0.1).to(torch.float64) * scale).to(dtype)
    g = _gen(seed)
    mask = torch.randint(0, 6, (B, H, W), generator=g)
    mask[torch.rand(B, H, W, generator=g) < 0.15] = IGNORE_INDEX
    mask[0, :, : W // 2] = 2  # a sample with a large region of one class
    # Odd numbers of classes too, where ceil(n / 2) differs from n // 2: 3 in sample 1, 5 in 3.
    mask[1] = torch.where(mask[1] == IGNORE_INDEX, IGNORE_INDEX, mask[1] % 3)
    mask[3][mask[3] == 4] = 5
    return {"img": img, "gt_semantic_seg": mask, "img_id": [f"tile_{i}" for i in range(B)]}


def _partner(x: torch.Tensor, shift: int) -> torch.Tensor:
    return x[(torch.arange(B) + shift) % B]


def _clone(batch: dict) -> dict:
    return {k: v.clone() if isinstance(v, torch.Tensor) else list(v) for k, v in batch.items()}


def _assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype
            assert torch.equal(a[key], b[key]), key
        else:
            assert a[key] == b[key], key


def _source(batch: dict, out: dict, shift: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per pixel (B, H, W): the image came from the partner (every band), and it stayed own."""
    from_partner = (out["img"] == _partner(batch["img"], shift)).all(dim=1)
    own = (out["img"] == batch["img"]).all(dim=1)
    return from_partner, own


def test_cutmix_pastes_one_box_of_image_and_mask_from_the_partner():
    batch = _batch()
    mix = CutMix(p=1.0, alpha=1.0)
    draw = mix.draw(batch, _gen(3))
    out = mix(batch, _gen(3))
    s = draw.shift
    assert 1 <= s < B and draw.mixed.all()
    from_partner, own = _source(batch, out, s)
    # The image values are unique per sample, so every pixel is exactly one of the two.
    assert torch.equal(from_partner, ~own)
    partner_mask = _partner(batch["gt_semantic_seg"], s)
    for i in range(B):
        box = from_partner[i]
        # Image from the partner iff mask from the partner (the mask is compared where the two
        # masks differ, the only pixels where its source is visible).
        differs = batch["gt_semantic_seg"][i] != partner_mask[i]
        expected_mask = torch.where(box, partner_mask[i], batch["gt_semantic_seg"][i])
        assert torch.equal(out["gt_semantic_seg"][i], expected_mask)
        assert torch.equal((out["gt_semantic_seg"][i] == partner_mask[i]) & differs, box & differs)
        # The pasted region is an axis-aligned box, clipped, of the size lam implies.
        rows, cols = box.any(dim=1).nonzero().flatten(), box.any(dim=0).nonzero().flatten()
        lam = float(draw.lam[i])
        full_h, full_w = round(H * math.sqrt(1 - lam)), round(W * math.sqrt(1 - lam))
        if box.any():
            top, bottom = int(rows.min()), int(rows.max()) + 1
            left, right = int(cols.min()), int(cols.max()) + 1
            assert box[top:bottom, left:right].all() and box.sum() == (bottom - top) * (
                right - left
            )
            assert (top, bottom, left, right) == tuple(draw.boxes[i].tolist())
            # Clipping only shortens a side, and only where it touches the border.
            assert bottom - top <= full_h and right - left <= full_w
            assert bottom - top == full_h or top == 0 or bottom == H
            assert right - left == full_w or left == 0 or right == W
            # The partner's ignore pixels inside the box stay ignore.
            partner_ignored = box & (partner_mask[i] == IGNORE_INDEX)
            assert (out["gt_semantic_seg"][i][partner_ignored] == IGNORE_INDEX).all()
        else:
            assert full_h == 0 or full_w == 0
    assert out["img_id"] == batch["img_id"]


def test_cutmix_box_sizes_over_many_draws():
    # Beta(1, 1) is uniform: over many draws the boxes cover every size, and each mixed sample's
    # box has the area that its lam gives (up to rounding and clipping).
    batch = _batch()
    mix = CutMix(p=1.0, alpha=1.0)
    g = _gen(11)
    areas = []
    for _ in range(50):
        draw = mix.draw(batch, g)
        heights = draw.boxes[:, 1] - draw.boxes[:, 0]
        widths = draw.boxes[:, 3] - draw.boxes[:, 2]
        cut = (1 - draw.lam).sqrt()
        assert (heights <= torch.round(H * cut) + 0.5).all() and (widths <= W * cut + 0.5).all()
        areas.append((heights * widths).float() / (H * W))
    areas = torch.cat(areas)
    assert areas.min() < 0.1 and areas.max() > 0.5


def test_classmix_pastes_exactly_half_of_the_partners_classes():
    batch = _batch()
    mix = ClassMix(p=1.0)
    draw = mix.draw(batch, _gen(5))
    out = mix(batch, _gen(5))
    s = draw.shift
    partner_mask = _partner(batch["gt_semantic_seg"], s)
    from_partner, own = _source(batch, out, s)
    assert torch.equal(from_partner, ~own)
    for i in range(B):
        present = partner_mask[i][partner_mask[i] != IGNORE_INDEX].unique()
        chosen = draw.chosen[i].nonzero().flatten()
        assert len(chosen) == math.ceil(len(present) / 2)
        assert torch.isin(chosen, present).all()
        m = torch.isin(partner_mask[i], chosen)
        # Pasted pixels are exactly M, for the image and for the mask.
        assert torch.equal(from_partner[i], m)
        expected = torch.where(m, partner_mask[i], batch["gt_semantic_seg"][i])
        assert torch.equal(out["gt_semantic_seg"][i], expected)
        # The partner's ignore pixels are never pasted; own ignore stays where not covered.
        assert not (m & (partner_mask[i] == IGNORE_INDEX)).any()
        own_ignored = batch["gt_semantic_seg"][i] == IGNORE_INDEX
        assert (out["gt_semantic_seg"][i][own_ignored & ~m] == IGNORE_INDEX).all()
    # Sample 1 holds three classes, sample 3 five: their partners get two and three of them.
    assert draw.chosen[(1 - s) % B].sum() == 2
    assert draw.chosen[(3 - s) % B].sum() == 3


def test_classmix_partner_all_ignore_pastes_nothing():
    batch = _batch()
    batch["gt_semantic_seg"][:] = IGNORE_INDEX
    out = ClassMix(p=1.0)(batch, _gen(0))
    _assert_same(out, batch)
    batch = _batch()
    batch["gt_semantic_seg"][2] = IGNORE_INDEX
    mix = ClassMix(p=1.0)
    draw = mix.draw(batch, _gen(0))
    out = mix(batch, _gen(0))
    target = (2 - draw.shift) % B  # the sample whose partner is sample 2
    assert torch.equal(out["img"][target], batch["img"][target])
    assert not draw.chosen[target].any()


def test_mixup_blends_images_and_loss():
    batch = _batch()
    mix = MixUp(p=1.0, alpha=0.4)
    draw = mix.draw(batch, _gen(2))
    out = mix(batch, _gen(2))
    lam, s = out[MIXUP_WEIGHT], draw.shift
    assert isinstance(lam, float) and 0.0 <= lam <= 1.0 and lam == draw.lam
    a, b = batch["img"], _partner(batch["img"], s)
    assert torch.equal(out["img"], lam * a + (1 - lam) * b)
    assert torch.equal(out["gt_semantic_seg"], batch["gt_semantic_seg"])
    assert torch.equal(out[MIXUP_TARGET], _partner(batch["gt_semantic_seg"], s))

    logits = torch.randn(B, 6, H, W, generator=_gen(4))
    loss_fn = CEDiceLoss(ignore_index=IGNORE_INDEX)
    by_hand = lam * loss_fn(logits, batch["gt_semantic_seg"]) + (1 - lam) * loss_fn(
        logits, out[MIXUP_TARGET]
    )
    assert torch.equal(mixed_loss(loss_fn, logits, out), by_hand)
    assert not torch.equal(by_hand, loss_fn(logits, batch["gt_semantic_seg"]))
    # An unmixed batch: the plain loss.
    assert torch.equal(
        mixed_loss(loss_fn, logits, batch), loss_fn(logits, batch["gt_semantic_seg"])
    )

    union = (batch["gt_semantic_seg"] == IGNORE_INDEX) | (out[MIXUP_TARGET] == IGNORE_INDEX)
    assert torch.equal(ignore_mask(out, IGNORE_INDEX), union)
    assert union.sum() > (batch["gt_semantic_seg"] == IGNORE_INDEX).sum()
    assert torch.equal(ignore_mask(batch, IGNORE_INDEX), batch["gt_semantic_seg"] == IGNORE_INDEX)


def test_mixup_of_an_integer_image_is_float():
    batch = _batch()
    batch["img"] = torch.randint(0, 256, (B, C, H, W), dtype=torch.uint8, generator=_gen(0))
    mix = MixUp(p=1.0)
    lam = mix.draw(batch, _gen(1)).lam
    out = mix(batch, _gen(1))
    assert out["img"].dtype == torch.float32
    a = batch["img"].float()
    assert torch.equal(
        out["img"], lam * a + (1 - lam) * _partner(a, mix.draw(batch, _gen(1)).shift)
    )


@pytest.mark.parametrize("mix", [CutMix(p=0.0), ClassMix(p=0.0), MixUp(p=0.0)], ids=repr)
def test_p_zero_returns_the_batch_unchanged(mix):
    batch = _batch()
    out = mix(batch, _gen(0))
    assert out is not batch
    _assert_same(out, batch)


@pytest.mark.parametrize("mix", [CutMix(p=1.0), ClassMix(p=1.0), MixUp(p=1.0)], ids=repr)
def test_a_batch_of_one_is_unchanged(mix):
    batch = {k: v[:1] for k, v in _batch().items()}
    out = mix(batch, _gen(0))
    assert out is not batch
    _assert_same(out, batch)


@pytest.mark.parametrize("mix", [CutMix(p=0.5), ClassMix(p=0.5), MixUp(p=0.5)], ids=repr)
def test_same_generator_state_same_mix_and_input_untouched(mix):
    batch = _batch()
    before = _clone(batch)
    first = mix(batch, _gen(7))
    _assert_same(batch, before)
    _assert_same(first, mix(batch, _gen(7)))
    # The default generator works too, and follows torch.manual_seed.
    torch.manual_seed(7)
    default_first = mix(batch)
    torch.manual_seed(7)
    _assert_same(default_first, mix(batch))
    # Over a few calls the outcome varies (mixed and unmixed samples at p=0.5).
    g = _gen(8)
    results = [mix(batch, g)["img"] for _ in range(6)]
    assert any(not torch.equal(results[0], r) for r in results[1:])
    _assert_same(batch, before)


def test_partner_is_never_the_sample_itself():
    batch = _batch()
    g = _gen(9)
    shifts = {CutMix(p=1.0).draw(batch, g).shift for _ in range(40)}
    assert shifts == set(range(1, B))


def test_per_sample_coin_flips():
    batch = _batch()
    mix = CutMix(p=0.5, alpha=1.0)
    g = _gen(10)
    for _ in range(10):
        draw = mix.draw(batch, g)
        unmixed = ~draw.mixed
        assert (draw.boxes[unmixed] == 0).all()
    flips = torch.stack([mix.draw(batch, g).mixed for _ in range(200)]).float().mean()
    assert 0.4 < flips < 0.6


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("mix", [CutMix(p=1.0), ClassMix(p=1.0), MixUp(p=1.0)], ids=repr)
def test_four_bands_and_half_precision(mix, dtype):
    # Scaled so that half precision still tells the samples apart.
    batch = _batch(channels=4, dtype=dtype, scale=1e-3)
    out = mix(batch, _gen(0))
    assert out["img"].dtype == dtype and out["img"].shape == (B, 4, H, W)
    assert out["gt_semantic_seg"].dtype == torch.int64
    if isinstance(mix, MixUp):
        lam, s = out[MIXUP_WEIGHT], mix.draw(batch, _gen(0)).shift
        a = batch["img"].float()
        expected = (lam * a + (1 - lam) * _partner(a, s)).to(dtype)
        assert torch.equal(out["img"], expected)
    else:
        # Every band of a pixel comes from the same sample.
        s = mix.draw(batch, _gen(0)).shift
        from_partner = out["img"] == _partner(batch["img"], s)
        assert (from_partner.all(dim=1) == from_partner.any(dim=1)).all()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: CutMix(p=1.5), "p=1.5"),
        (lambda: CutMix(p=-0.1), "p=-0.1"),
        (lambda: CutMix(alpha=0.0), "alpha=0.0"),
        (lambda: ClassMix(p=2), "p=2"),
        (lambda: ClassMix(ignore_index=1.5), "ignore_index=1.5"),
        (lambda: MixUp(alpha=-1.0), "alpha=-1.0"),
        (lambda: MixUp(p=float("nan")), "p=nan"),
        (lambda: MixUp(alpha=float("inf")), "alpha=inf"),
    ],
)
def test_bad_arguments_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@pytest.mark.parametrize("mix", [CutMix(p=1.0), ClassMix(p=1.0), MixUp(p=1.0)], ids=repr)
def test_bad_batches_raise(mix):
    batch = _batch()
    with pytest.raises(ValueError, match="gt_semantic_seg"):
        mix({"img": batch["img"]})
    with pytest.raises(ValueError, match="'img'"):
        mix({"gt_semantic_seg": batch["gt_semantic_seg"]})
    with pytest.raises(ValueError, match=r"\(4, 3, 24, 20\).*\(4, 24, 19\)"):
        mix({"img": batch["img"], "gt_semantic_seg": batch["gt_semantic_seg"][..., :-1]})
    with pytest.raises(ValueError, match=r"\(3, 24, 20\)"):
        mix({"img": batch["img"][0], "gt_semantic_seg": batch["gt_semantic_seg"]})
    with pytest.raises(ValueError, match=MIXUP_TARGET):
        mix(MixUp(p=1.0)(batch, _gen(0)))


def test_repr_shows_the_settings():
    assert repr(CutMix(p=0.25, alpha=2.0)) == "CutMix(p=0.25, alpha=2.0)"
    assert repr(ClassMix(p=1.0, ignore_index=0)) == "ClassMix(p=1.0, ignore_index=0)"
    assert repr(MixUp()) == "MixUp(p=0.5, alpha=0.4)"
    assert all(isinstance(m, BatchMix) for m in (CutMix(), ClassMix(), MixUp()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("mix", [CutMix(p=0.5), ClassMix(p=0.5), MixUp(p=1.0)], ids=repr)
def test_cuda_mixes_as_the_cpu_does(mix):
    batch = _batch()
    cuda = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
    on_cpu, on_cuda = mix(batch, _gen(12)), mix(cuda, _gen(12))
    assert on_cuda["img"].is_cuda
    _assert_same(
        on_cpu, {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in on_cuda.items()}
    )
