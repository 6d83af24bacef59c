"""Turning a loaded config into a Lightning Trainer and running a training stage."""

import logging
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import TensorBoardLogger

from geoseg.bands import describe_input, same_raster_input
from geoseg.errors import CheckpointError, ConfigError
from geoseg.models.checkpoint import load_pretrained_weights
from geoseg.training.callbacks import AtomicCheckpointIO, reliability_callbacks
from geoseg.training.distributed import unpadded_eval_loaders
from geoseg.training.resume import check_resume_checkpoint
from geoseg.training.supervised import SupervisedModule

log = logging.getLogger(__name__)

LOG_ROOT = "lightning_logs"
LAST_CHECKPOINT_NAME = "last"  # <weights_path>/last.ckpt: what the next stage reads


def default_precision() -> str:
    """bf16 mixed precision on GPUs that support it, full precision elsewhere."""
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def trainer_determinism(deterministic: bool | str) -> bool | str:
    """The Trainer's ``deterministic`` for the config's value: True becomes "warn".

    Deterministic kernels are then used wherever PyTorch has one (on a CPU every op this project
    runs has one). On CUDA some backward passes have none: bilinear upsampling, reflection padding,
    adaptive average pooling and the NLL loss behind cross-entropy. Strict mode would stop the
    run at the first of them; "warn" names them and runs them as they are, so CUDA runs are close
    to, not exactly, reproducible.
    """
    if deterministic is True:
        return "warn"
    if deterministic in (False, None, "warn"):
        return deterministic or False
    raise ConfigError(f"deterministic={deterministic!r}: expected True, False or 'warn'")


def build_trainer(config: SimpleNamespace) -> pl.Trainer:
    """Trainer with TensorBoard logging, best + last checkpoints and the config's hardware settings."""
    best = ModelCheckpoint(
        dirpath=config.weights_path,
        filename=config.weights_name,
        monitor=config.monitor,
        mode=config.monitor_mode,
        save_top_k=1,
        auto_insert_metric_name=False,
        enable_version_counter=False,
    )
    # A checkpoint of its own for the latest state: Lightning's save_last only refreshes last.ckpt
    # in the epochs where the monitored metric improved.
    last = ModelCheckpoint(
        dirpath=config.weights_path, filename=LAST_CHECKPOINT_NAME, enable_version_counter=False
    )
    return pl.Trainer(
        max_epochs=config.max_epoch,
        check_val_every_n_epoch=config.check_val_every_n_epoch,
        accelerator=config.accelerator,
        devices=config.devices,
        num_nodes=config.num_nodes,
        strategy=config.strategy,
        sync_batchnorm=config.sync_batchnorm,
        precision=config.precision or default_precision(),
        deterministic=trainer_determinism(config.deterministic),
        accumulate_grad_batches=config.accumulate_grad_batches,
        gradient_clip_val=config.gradient_clip_val,
        log_every_n_steps=config.log_every_n_steps,
        logger=TensorBoardLogger(save_dir=LOG_ROOT, name=config.log_name),
        callbacks=[
            best,
            last,
            LearningRateMonitor(logging_interval="step"),
            *reliability_callbacks(config, LAST_CHECKPOINT_NAME),
        ],
        plugins=[AtomicCheckpointIO()],
    )


def check_input_bands(config: SimpleNamespace) -> None:
    """Every dataset of the config must read the bands its network takes (a ``RasterInput``
    given to the network and not to a dataset would fail late, on the first batch)."""
    expected = getattr(config.net, "raster", None)
    val_loaders = config.val_loader
    if not isinstance(val_loaders, dict):
        val_loaders = {"val_loader": val_loaders}
    for name, loader in {"train_loader": config.train_loader, **val_loaders}.items():
        dataset = getattr(loader, "dataset", None)
        if not hasattr(dataset, "raster"):  # a dataset of the user's own: not checked
            continue
        if not same_raster_input([dataset.raster, expected]):
            raise ConfigError(
                f"{config.config_path}: {name}'s dataset reads {describe_input(dataset.raster)}, "
                f"the network {describe_input(expected)}; give both the same raster=..."
            )


def train(
    config: SimpleNamespace, module_class=SupervisedModule
) -> tuple[pl.Trainer, pl.LightningModule]:
    """Run one training stage: initialise or resume, fit, and return the trainer and module."""
    check_input_bands(config)
    if config.pretrained_ckpt_path and not config.resume_ckpt_path:
        if not Path(config.pretrained_ckpt_path).is_file():
            raise CheckpointError(
                f"pretrained_ckpt_path {config.pretrained_ckpt_path}: checkpoint not found; run the "
                f"stage that writes it first (see the docstring of {config.config_path})"
            )
        load_pretrained_weights(config.net, config.pretrained_ckpt_path)
    if config.resume_ckpt_path:
        check_resume_checkpoint(
            config.resume_ckpt_path, config.net, config.classes, config.optimizer
        )
    module = module_class.from_config(config)
    trainer = build_trainer(config)
    val_loaders = config.val_loader
    if isinstance(val_loaders, dict):
        val_loaders = list(val_loaders.values())
    # Under DDP, no validation sample is repeated to even out the processes (exact metrics).
    val_loaders = unpadded_eval_loaders(val_loaders, trainer.world_size, trainer.global_rank)
    trainer.fit(
        module,
        config.train_loader,
        val_loaders,
        ckpt_path=config.resume_ckpt_path,
        weights_only=True,
    )
    if trainer.is_global_zero:
        last = Path(config.weights_path) / f"{LAST_CHECKPOINT_NAME}.ckpt"
        best = trainer.checkpoint_callback.best_model_path
        log.info("finished: last checkpoint %s, best %s", last, best)
    return trainer, module
