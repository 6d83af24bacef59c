"""Knowledge distillation: the confidence-masked KD loss, the KD module, and the stage end to end."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from geoseg.config import load_config
from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.errors import CheckpointError, ConfigError
from geoseg.losses import CEDiceLoss
from geoseg.models import load_model
from geoseg.models.checkpoint import (
    CHECKPOINT_KEY,
    describe_model,
    extract_state_dict,
    read_checkpoint,
)
from geoseg.training import train
from geoseg.training.kd import KD_DEFAULTS, KD_REQUIRED, KDModule
from geoseg.utils.kd_utils import compute_kd_loss

from conftest import REPO_ROOT, run_python, tiny_ftunetformer, write_config

STEPS_PER_EPOCH = 2  # 8 Train tiles, batch 4, drop_last

# Appended to conftest's TINY_CONFIG: a KD stage with one warm-up epoch out of two.
KD_SETTINGS = """
teacher_ckpt_path = {teacher!r}
pretrained_ckpt_path = {init!r}
kd_warmup_epochs = 1
kd_temperature = 2.0
kd_alpha = 0.6
kd_confidence_threshold = 0.3
log_name = "tiny_kd"
"""


def write_kd_config(path, *, teacher, init=None, **values):
    """The tiny supervised config plus the KD names."""
    write_config(path, **values)
    with path.open("a") as file:
        file.write(KD_SETTINGS.format(teacher=str(teacher), init=init and str(init)))
    return path


def save_checkpoint(path, net, classes=CLASSES):
    """A checkpoint as the training stages write it (weights under net., the model record)."""
    spec = describe_model(net, classes, IGNORE_INDEX)
    state = {f"net.{key}": value for key, value in net.state_dict().items()}
    torch.save({"state_dict": state, CHECKPOINT_KEY: spec.to_dict()}, path)
    return path


def kd_module(teacher_path, **settings) -> KDModule:
    from geoseg.training.kd import load_teacher

    net = tiny_ftunetformer()
    return KDModule(
        net,
        CEDiceLoss(ignore_index=IGNORE_INDEX),
        torch.optim.AdamW(net.parameters(), lr=1e-3),
        None,
        teacher=load_teacher(teacher_path, CLASSES),
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
        **settings,
    )


def reference_kd_loss(student, teacher, temperature, threshold, ignore):
    """The KD formula, one pixel at a time with math.exp/log (float64)."""

    def softmax(values, t):
        top = max(v / t for v in values)
        exps = [math.exp(v / t - top) for v in values]
        return [e / sum(exps) for e in exps]

    batch, num_classes, height, width = student.shape
    total, kept, valid = 0.0, 0, 0
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                if ignore[b, y, x]:
                    continue
                valid += 1
                s = [float(student[b, c, y, x]) for c in range(num_classes)]
                t = [float(teacher[b, c, y, x]) for c in range(num_classes)]
                if max(softmax(t, 1.0)) < threshold:
                    continue
                kept += 1
                q, r = softmax(t, temperature), softmax(s, temperature)
                total += sum(
                    qc * (math.log(qc) - math.log(rc)) for qc, rc in zip(q, r, strict=True)
                )
    loss = temperature**2 * total / kept if kept else 0.0
    return loss, (kept / valid if valid else 0.0)


# --- compute_kd_loss ----------------------------------------------------------------------------


def test_hand_computed_example():
    # One image, two classes, four pixels (T = 1, threshold 0.6):
    #   A: teacher (ln 3, 0) -> q = (3/4, 1/4), confidence 0.75, kept; student (0, 0) -> r = (1/2, 1/2)
    #      KL = 3/4 ln(3/2) + 1/4 ln(1/2) = 0.1308120
    #   B: teacher (0, 0) -> confidence 0.5 < 0.6, left out
    #   C: teacher (0, ln 9) -> q = (1/10, 9/10), kept; student (0, ln 4) -> r = (1/5, 4/5)
    #      KL = 1/10 ln(1/2) + 9/10 ln(9/8) = 0.0366900
    #   D: confident teacher, but ignored in the ground truth
    # KD = (0.1308120 + 0.0366900) / 2 = 0.0837510; kept fraction = 2 of 3 non-ignored pixels.
    teacher = torch.tensor([[math.log(3), 0.0, 0.0, 5.0], [0.0, 0.0, math.log(9), 0.0]])
    student = torch.tensor([[0.0, 1.0, 0.0, -3.0], [0.0, 2.0, math.log(4), 0.0]])
    ignore = torch.tensor([[[False, False, False, True]]])
    loss, kept = compute_kd_loss(
        student.view(1, 2, 1, 4),
        teacher.view(1, 2, 1, 4),
        temperature=1.0,
        confidence_threshold=0.6,
        ignore_mask=ignore,
    )
    kl_a = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    kl_c = 0.1 * math.log(0.5) + 0.9 * math.log(9 / 8)
    assert kl_a == pytest.approx(0.1308120, abs=1e-7) and kl_c == pytest.approx(0.0366900, abs=1e-7)
    assert loss.item() == pytest.approx((kl_a + kl_c) / 2, abs=1e-6)
    assert loss.item() == pytest.approx(0.0837510, abs=1e-6)
    assert kept.item() == pytest.approx(2 / 3)
    assert loss.dtype == kept.dtype == torch.float32


def test_temperature_scales_by_t_squared_and_confidence_is_taken_at_t_1():
    # Teacher (2 ln 3, 0): at T = 2 q = (3/4, 1/4); at T = 1 its confidence is 9/10, so it is kept
    # at threshold 0.8 (at T = 2 it would be 0.75 and left out). KD = 2^2 * KL(q || (1/2, 1/2)).
    teacher = torch.tensor([2 * math.log(3), 0.0]).view(1, 2, 1, 1)
    loss, kept = compute_kd_loss(
        torch.zeros(1, 2, 1, 1), teacher, temperature=2.0, confidence_threshold=0.8
    )
    expected = 4 * (0.75 * math.log(1.5) + 0.25 * math.log(0.5))  # 0.5232481
    assert loss.item() == pytest.approx(expected, abs=1e-6)
    assert kept.item() == 1.0


@pytest.mark.parametrize(("temperature", "threshold"), [(3.0, 0.5), (1.0, 0.35), (4.5, 0.0)])
def test_matches_a_per_pixel_reference(temperature, threshold):
    generator = torch.Generator().manual_seed(int(temperature * 10 + threshold * 100))
    student = torch.randn(2, 5, 6, 7, generator=generator) * 3
    teacher = torch.randn(2, 5, 6, 7, generator=generator) * 3
    ignore = torch.rand(2, 6, 7, generator=generator) < 0.2
    loss, kept = compute_kd_loss(student, teacher, temperature, threshold, ignore_mask=ignore)
    ref_loss, ref_kept = reference_kd_loss(student, teacher, temperature, threshold, ignore)
    assert 0.0 < ref_kept < 1.0 or threshold == 0.0  # the mask matters in these cases
    assert loss.item() == pytest.approx(ref_loss, abs=1e-5)
    assert kept.item() == pytest.approx(ref_kept, abs=1e-6)


def test_loss_does_not_grow_with_image_size():
    generator = torch.Generator().manual_seed(3)
    student = torch.randn(2, 4, 5, 5, generator=generator)
    teacher = torch.randn(2, 4, 5, 5, generator=generator) * 2
    ignore = torch.rand(2, 5, 5, generator=generator) < 0.3
    small = compute_kd_loss(student, teacher, ignore_mask=ignore)
    large = compute_kd_loss(
        student.repeat(1, 1, 4, 3), teacher.repeat(1, 1, 4, 3), ignore_mask=ignore.repeat(1, 4, 3)
    )
    assert large[0].item() == pytest.approx(small[0].item(), rel=1e-5)
    assert large[1].item() == pytest.approx(small[1].item(), rel=1e-6)
    # nor with the batch size
    doubled = compute_kd_loss(
        torch.cat([student, student]),
        torch.cat([teacher, teacher]),
        ignore_mask=ignore.repeat(2, 1, 1),
    )
    assert doubled[0].item() == pytest.approx(small[0].item(), rel=1e-5)


def test_pixels_exactly_at_the_threshold_are_kept():
    teacher = torch.zeros(1, 4, 2, 2)  # uniform: confidence exactly 0.25 everywhere
    student = torch.randn(1, 4, 2, 2)
    loss, kept = compute_kd_loss(student, teacher, confidence_threshold=0.25)
    assert kept.item() == 1.0 and loss.item() > 0
    _, kept = compute_kd_loss(student, teacher, confidence_threshold=0.2500001)
    assert kept.item() == 0.0


@pytest.mark.parametrize("case", ["below_threshold", "all_ignored"])
def test_nothing_kept_gives_zero_and_finite_gradients(case):
    student = torch.randn(2, 3, 4, 4, requires_grad=True)
    teacher = torch.randn(2, 3, 4, 4)
    if case == "below_threshold":
        loss, kept = compute_kd_loss(student, teacher, confidence_threshold=1.01)
    else:
        ignore = torch.ones(2, 4, 4, dtype=torch.bool)
        loss, kept = compute_kd_loss(student, teacher, ignore_mask=ignore)
    loss.backward()
    assert loss.item() == 0.0 and kept.item() == 0.0
    assert torch.isfinite(student.grad).all() and not student.grad.any()


def test_teacher_logits_at_another_resolution_are_resized_bilinearly():
    generator = torch.Generator().manual_seed(5)
    student = torch.randn(2, 3, 16, 12, generator=generator)
    teacher = torch.randn(2, 3, 4, 3, generator=generator) * 2
    resized = F.interpolate(teacher, size=(16, 12), mode="bilinear", align_corners=False)
    ignore = torch.rand(2, 16, 12, generator=generator) < 0.2
    got = compute_kd_loss(student, teacher, ignore_mask=ignore)
    want = compute_kd_loss(student, resized, ignore_mask=ignore)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])


def test_float32_and_gradients_reach_the_student_only():
    student = torch.randn(1, 3, 4, 4).bfloat16().requires_grad_(True)
    teacher = torch.randn(1, 3, 4, 4, requires_grad=True)
    loss, kept = compute_kd_loss(student, teacher.bfloat16(), confidence_threshold=0.0)
    loss.backward()
    assert loss.dtype == torch.float32 and kept.dtype == torch.float32
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


# --- the KD module ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def teacher_path(tmp_path_factory):
    torch.manual_seed(7)
    return save_checkpoint(tmp_path_factory.mktemp("teacher") / "teacher.ckpt", tiny_ftunetformer())


def _batch(seed: int = 0) -> dict:
    generator = torch.Generator().manual_seed(seed)
    target = torch.randint(0, len(CLASSES), (2, 32, 32), generator=generator)
    target[:, :4] = IGNORE_INDEX
    return {"img": torch.randn(2, 3, 32, 32, generator=generator), "gt_semantic_seg": target}


def test_total_loss_weights_the_supervised_term_with_alpha(teacher_path):
    batch = _batch()
    module = kd_module(teacher_path, kd_warmup_epochs=0, kd_alpha=1.0)
    module.net.eval()  # no dropout: the same logits on every call
    with torch.no_grad():
        supervised, logits = module.supervised_step(batch)
        total, terms = module.distillation_step(batch)
        assert torch.equal(total, supervised)  # alpha -> 1: the supervised loss exactly
        module.kd_alpha = 0.7
        total, terms = module.distillation_step(batch)
        kd, kept = compute_kd_loss(
            logits,
            module.teacher(batch["img"]),
            temperature=3.0,
            confidence_threshold=0.5,
            ignore_mask=batch["gt_semantic_seg"] == IGNORE_INDEX,
        )
    assert torch.equal(terms["train/supervised_loss"], supervised)
    assert torch.allclose(terms["train/kd_loss"], kd) and terms["kd/kept_fraction"] == kept
    assert total.item() == pytest.approx(0.7 * supervised.item() + 0.3 * kd.item(), rel=1e-6)


def test_warm_up_is_supervised_only_and_never_runs_the_teacher(teacher_path):
    module = kd_module(teacher_path, kd_warmup_epochs=1)
    calls = []
    module.teacher.register_forward_hook(lambda *args: calls.append(1))
    total, terms = module.distillation_step(_batch())
    assert not module.is_distilling() and calls == []
    assert set(terms) == {"train/supervised_loss"} and total is terms["train/supervised_loss"]


def test_teacher_is_frozen_in_eval_and_outside_the_module(teacher_path):
    module = kd_module(teacher_path)
    module.train()
    assert module.net.training and not module.teacher.training
    assert not any(p.requires_grad for p in module.teacher.parameters())
    assert all(key.startswith("net.") for key in module.state_dict())
    teacher_params = {id(p) for p in module.teacher.parameters()}
    assert not teacher_params & {id(p) for p in module.parameters()}


def test_teacher_normalises_the_raw_batch_with_its_own_statistics(tmp_path):
    normalization = {"mean": (0.0, 0.0, 0.0), "std": (255.0, 255.0, 255.0)}
    teacher = tiny_ftunetformer(normalization=normalization)
    path = save_checkpoint(tmp_path / "teacher.ckpt", teacher)
    module = kd_module(path)  # the student keeps ImageNet's statistics
    seen = []
    backbone = module.teacher.backbone
    backbone.register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    rgb = torch.randint(0, 256, (1, 3, 32, 32)).float()
    module.teacher_logits(rgb)
    torch.testing.assert_close(seen[0], rgb / 255.0, atol=1e-6, rtol=0)


def test_an_imported_geoseg_checkpoint_teaches_with_its_reference_logits(tmp_path):
    """A GeoSeg FT-UNetFormer, converted once, is a teacher that gives GeoSeg's logits for the
    raw 0-255 image (it applies GeoSeg's ImageNet normalisation itself)."""
    from geoseg.classes import IMAGENET_NORMALIZATION
    from geoseg.models.import_geoseg import import_geoseg_checkpoint

    fixtures = Path(__file__).parent / "data" / "geoseg"
    teacher = tmp_path / "geoseg_teacher.ckpt"
    import_geoseg_checkpoint(fixtures / "ft_unetformer_geoseg.ckpt", teacher, arch="ft_unetformer")
    module = kd_module(teacher)
    reference = torch.load(fixtures / "ft_unetformer_io.pt", weights_only=True)
    mean = torch.tensor(IMAGENET_NORMALIZATION["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION["std"]).view(1, 3, 1, 1)
    logits = module.teacher_logits(reference["input"] * std + mean)
    torch.testing.assert_close(logits, reference["logits"], rtol=0, atol=1e-4)


def test_teacher_with_other_classes_is_a_clear_error(tmp_path):
    path = save_checkpoint(tmp_path / "three.ckpt", tiny_ftunetformer(3), classes=("a", "b", "c"))
    with pytest.raises(CheckpointError, match=r"three\.ckpt.*3 classes.*config has 6"):
        kd_module(path)
    renamed = ("other", "forest", "grassland", "cropland", "settlement", "river")
    path = save_checkpoint(tmp_path / "renamed.ckpt", tiny_ftunetformer(), classes=renamed)
    with pytest.raises(CheckpointError, match="renamed.ckpt.*river"):
        kd_module(path)


def test_bad_kd_settings_are_rejected(teacher_path):
    with pytest.raises(ConfigError, match=r"kd_alpha=1\.5.*kd_warmup_epochs=-1"):
        kd_module(teacher_path, kd_alpha=1.5, kd_warmup_epochs=-1)


# --- the stage end to end -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def kd_run(synthetic_root, tmp_path_factory):
    """A 1-epoch supervised teacher, then 2 KD epochs (1 warm-up) of a student initialised from it."""
    workdir = tmp_path_factory.mktemp("kd")
    teacher_config = write_config(
        workdir / "teacher.py",
        data_root=synthetic_root,
        weights_path=workdir / "teacher",
        max_epoch=1,
    )
    teacher_ckpt = workdir / "teacher" / "last.ckpt"
    kd_config = write_kd_config(
        workdir / "kd.py",
        teacher=teacher_ckpt,
        init=teacher_ckpt,
        data_root=synthetic_root,
        weights_path=workdir / "student",
        max_epoch=2,
    )
    calls = []

    class SpiedKDModule(KDModule):
        @classmethod
        def from_config(cls, config, **kwargs):
            module = super().from_config(config, **kwargs)

            def record(teacher, inputs, output):
                calls.append((module.current_epoch, torch.is_grad_enabled(), teacher.training))

            module.teacher.register_forward_hook(record)
            return module

    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        torch.manual_seed(0)
        train(load_config(teacher_config))
        torch.manual_seed(1)
        trainer, module = train(load_config(kd_config, KD_REQUIRED, KD_DEFAULTS), SpiedKDModule)
    return workdir, teacher_ckpt, module, calls


def test_teacher_weights_are_untouched_and_the_student_learns(kd_run):
    workdir, teacher_ckpt, module, _ = kd_run
    saved_teacher = extract_state_dict(read_checkpoint(teacher_ckpt))
    for key, value in module.teacher.state_dict().items():
        assert torch.equal(value, saved_teacher[key]), key
    assert not module.teacher.training
    student = extract_state_dict(read_checkpoint(workdir / "student" / "last.ckpt"))
    assert student.keys() == saved_teacher.keys()  # initialised from the same architecture
    assert any(not torch.equal(student[key], saved_teacher[key]) for key in student)


def test_teacher_runs_only_after_warm_up_without_autograd_in_eval(kd_run):
    calls = kd_run[3]
    assert calls == [(1, False, False)] * STEPS_PER_EPOCH


def test_tensorboard_has_both_terms_and_kd_only_after_warm_up(kd_run):
    workdir = kd_run[0]
    (run_dir,) = (workdir / "lightning_logs" / "tiny_kd").iterdir()
    events = EventAccumulator(str(run_dir)).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train_loss_step", "train_loss_epoch", "val_mIoU"):
        assert tag in scalars, tag
    assert any(tag.startswith("lr-") for tag in scalars)
    supervised_steps = [event.step for event in events.Scalars("train/supervised_loss")]
    kd_steps = [event.step for event in events.Scalars("train/kd_loss")]
    kept_steps = [event.step for event in events.Scalars("kd/kept_fraction")]
    assert len(supervised_steps) == 2 * STEPS_PER_EPOCH
    assert kd_steps == kept_steps == supervised_steps[STEPS_PER_EPOCH:]
    assert all(0.0 <= event.value <= 1.0 for event in events.Scalars("kd/kept_fraction"))
    assert all(event.value >= 0.0 for event in events.Scalars("train/kd_loss"))


def test_student_checkpoint_rebuilds_without_the_teacher(kd_run):
    workdir, _, module, _ = kd_run
    checkpoint = read_checkpoint(workdir / "student" / "last.ckpt")
    assert all(key.startswith("net.") for key in checkpoint["state_dict"])
    net = load_model(workdir / "student" / "last.ckpt")  # strict loading
    module.net.eval()
    batch = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(net(batch), module.net(batch))


def test_cli_without_teacher_names_the_file_and_the_stage(kd_run, synthetic_root):
    workdir = kd_run[0]
    config_path = write_kd_config(
        workdir / "no_teacher.py",
        teacher=workdir / "missing" / "last.ckpt",
        data_root=synthetic_root,
        weights_path=workdir / "unused",
    )
    result = run_python(REPO_ROOT / "train_kd.py", "-c", config_path, cwd=workdir, timeout=300)
    assert result.returncode == 2, result.stderr[-3000:]
    last_line = result.stderr.strip().splitlines()[-1]
    assert "missing/last.ckpt: teacher checkpoint not found" in last_line
    assert "train the teacher with the supervised stage first" in last_line


def test_the_teacher_sees_the_mixed_batch(teacher_path):
    from geoseg.datasets import ClassMix

    module = kd_module(teacher_path, kd_warmup_epochs=0, batch_mix=ClassMix(p=1.0))
    module.log = module.log_dict = lambda *args, **kwargs: None  # no trainer attached
    seen = []
    module.teacher.register_forward_hook(lambda _, args, __: seen.append(args[0].clone()))
    batch = _batch()
    torch.manual_seed(3)
    expected = ClassMix(p=1.0)(batch)
    torch.manual_seed(3)
    module.training_step(batch, 0)
    assert torch.equal(seen[0], expected["img"]) and not torch.equal(seen[0], batch["img"])


def test_a_mixup_batch_trains_on_the_blend_of_the_two_targets_losses(teacher_path):
    from geoseg.datasets import MIXUP_TARGET, MIXUP_WEIGHT, MixUp

    module = kd_module(teacher_path, kd_warmup_epochs=0, kd_alpha=1.0, batch_mix=MixUp(p=1.0))
    module.log = module.log_dict = lambda *args, **kwargs: None
    module.net.eval()  # no dropout: the same logits on every call
    batch = _batch()
    torch.manual_seed(5)
    mixed = MixUp(p=1.0)(batch)
    lam = mixed[MIXUP_WEIGHT]
    assert 0 < lam < 1 and not torch.equal(mixed[MIXUP_TARGET], batch["gt_semantic_seg"])
    with torch.no_grad():
        logits = module.net(mixed["img"])
        loss = CEDiceLoss(ignore_index=IGNORE_INDEX)
        expected = lam * loss(logits, batch["gt_semantic_seg"]) + (1 - lam) * loss(
            logits, mixed[MIXUP_TARGET]
        )
        torch.manual_seed(5)
        total = module.training_step(batch, 0)
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)


def test_a_batch_mix_that_is_not_a_mixing_transform_is_a_config_error(teacher_path):
    from geoseg.datasets import ClassMix

    for wrong in (ClassMix, "classmix"):  # the class itself, a name
        with pytest.raises(ConfigError, match=r"batch_mix=.*expected None or a mixing transform"):
            kd_module(teacher_path, batch_mix=wrong)
