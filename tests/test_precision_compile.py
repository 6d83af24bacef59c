"""Mixed precision keeps losses and metrics in float32; the torch.compile switch keeps checkpoints
loadable (plain weight names)."""

import pytest
import torch
from torch.utils.data import DataLoader

from geoseg.config import SUPERVISED_DEFAULTS, load_config
from geoseg.datasets import CLASSES, IGNORE_INDEX, TargetDataset
from geoseg.losses import CEDiceLoss
from geoseg.models import load_model, save_model
from geoseg.models.checkpoint import read_checkpoint
from geoseg.training import KDModule, SupervisedModule, train
from geoseg.training.kd import KD_DEFAULTS, load_teacher

from conftest import cpu_trainer, tiny_ftunetformer, write_config


def module_for(net, module_class=SupervisedModule, **kwargs):
    return module_class(
        net,
        CEDiceLoss(ignore_index=IGNORE_INDEX),
        torch.optim.AdamW(net.parameters(), lr=1e-3),
        None,
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
        **kwargs,
    )


def test_defaults_are_off():
    assert SUPERVISED_DEFAULTS["compile"] is False and KD_DEFAULTS["compile"] is False
    assert SUPERVISED_DEFAULTS["sync_batchnorm"] is False and KD_DEFAULTS["sync_batchnorm"] is False


# --- mixed precision ---------------------------------------------------------------------------


def test_bf16_validation_counts_every_pixel_and_scores_in_float32(synthetic_root):
    module = module_for(tiny_ftunetformer())
    trainer = cpu_trainer(precision="bf16-mixed")
    dataset = TargetDataset(synthetic_root, "Val")
    trainer.validate(module, DataLoader(dataset, batch_size=3), verbose=False)
    confusion = module.last_val_confusion["val"]
    valid = sum(int((dataset[i]["gt_semantic_seg"] != IGNORE_INDEX).sum()) for i in range(4))
    assert confusion.dtype == torch.int64 and int(confusion.sum()) == valid
    assert trainer.callback_metrics["val_loss"].dtype == torch.float32
    assert 0.0 <= trainer.callback_metrics["val_mIoU"].item() <= 1.0


def test_kd_loss_terms_stay_float32_under_bf16_autocast(tmp_path):
    teacher_path = tmp_path / "teacher.ckpt"
    save_model(
        tiny_ftunetformer(),
        teacher_path,
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
    )
    module = module_for(
        tiny_ftunetformer(),
        KDModule,
        teacher=load_teacher(teacher_path, CLASSES),
        kd_warmup_epochs=0,
        kd_confidence_threshold=0.0,
    )
    generator = torch.Generator().manual_seed(0)
    batch = {
        "img": torch.randn(2, 3, 32, 32, generator=generator),
        "gt_semantic_seg": torch.randint(0, len(CLASSES), (2, 32, 32), generator=generator),
    }
    with torch.autocast("cpu", dtype=torch.bfloat16):
        total, terms = module.distillation_step(batch)
        teacher_logits = module.teacher_logits(batch["img"])
    assert teacher_logits.dtype == torch.bfloat16  # the networks do run in bf16
    assert total.dtype == torch.float32
    assert all(value.dtype == torch.float32 for value in terms.values()), terms
    total.backward()


# --- torch.compile -------------------------------------------------------------------------------


def test_a_net_compiled_in_the_config_keeps_plain_weight_names():
    net = tiny_ftunetformer()
    module = module_for(torch.compile(net, backend="eager"))
    assert module.net is net
    assert all(key.startswith("net.") and "_orig_mod" not in key for key in module.state_dict())


def _train_compiled(synthetic_root, workdir, compile_setting: str):
    config_path = write_config(
        workdir / "compiled.py",
        data_root=synthetic_root,
        weights_path=workdir / "weights",
        max_epoch=1,
    )
    with config_path.open("a") as file:
        file.write(f"compile = {compile_setting}\n")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        torch.manual_seed(0)
        _, module = train(load_config(config_path))
    return module


def _check_checkpoint_loads(module, workdir, atol: float):
    checkpoint = read_checkpoint(workdir / "weights" / "last.ckpt")
    assert all("_orig_mod" not in key for key in checkpoint["state_dict"])
    net = load_model(workdir / "weights" / "last.ckpt")  # strict: every name must match
    batch = torch.randn(2, 3, 32, 32)
    module.net.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(batch), module.net(batch), atol=atol, rtol=0)


@pytest.mark.slow  # compiles a network
def test_compile_switch_trains_and_last_checkpoint_loads(synthetic_root, tmp_path):
    # dynamo's "eager" backend: the compile path through Lightning without minutes of codegen
    module = _train_compiled(synthetic_root, tmp_path, '{"backend": "eager"}')
    assert module.net._compiled_call_impl is not None  # nn.Module.compile was applied
    _check_checkpoint_loads(module, tmp_path, atol=0.0)


@pytest.mark.slow
def test_compile_true_with_inductor_trains_and_last_checkpoint_loads(synthetic_root, tmp_path):
    module = _train_compiled(synthetic_root, tmp_path, "True")
    assert module.net._compiled_call_impl is not None
    _check_checkpoint_loads(module, tmp_path, atol=1e-4)
