"""Turning a loaded config into a Lightning Trainer and running a training stage."""

import logging
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.environments import SLURMEnvironment
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, Logger, TensorBoardLogger

from geoseg.bands import check_same_input
from geoseg.datasets.sampling import DomainBalancedBatchSampler
from geoseg.errors import CheckpointError, ConfigError, preview
from geoseg.models.initialise import load_pretrained_weights
from geoseg.training.callbacks import AtomicCheckpointIO, reliability_callbacks
from geoseg.training.distributed import unpadded_eval_loaders
from geoseg.training.resume import check_resume_checkpoint
from geoseg.training.supervised import SupervisedModule

log = logging.getLogger(__name__)

LOG_ROOT = "lightning_logs"
LAST_CHECKPOINT_NAME = "last"  # <weights_path>/last.ckpt: what the next stage reads
# Lightning's SLURM support saves hpc_ckpt_<n>.ckpt in the Trainer's root folder (weights_path
# here) when SLURM sends this signal before the time limit, then requeues the job.
PREEMPTION_SIGNAL = signal.SIGUSR1
LOGGERS = ("tensorboard", "csv", "mlflow", "wandb")


def make_loggers(config: SimpleNamespace) -> list[Logger]:
    """The config's ``logger`` (a name of ``LOGGERS``, a list of them, or Lightning loggers) as
    Lightning loggers writing under ``lightning_logs/<log_name>``; a missing optional package is
    a ConfigError naming it."""
    names = config.logger if isinstance(config.logger, (list, tuple)) else [config.logger]
    loggers = []
    for name in names:
        if isinstance(name, Logger):
            loggers.append(name)
        elif name == "tensorboard":
            loggers.append(TensorBoardLogger(save_dir=LOG_ROOT, name=config.log_name))
        elif name == "csv":
            loggers.append(CSVLogger(save_dir=LOG_ROOT, name=config.log_name))
        elif name == "mlflow":
            from pytorch_lightning.loggers import MLFlowLogger

            _require(name, "mlflow")
            uri = os.environ.get("MLFLOW_TRACKING_URI", f"file:{Path(LOG_ROOT).resolve()}/mlruns")
            loggers.append(MLFlowLogger(experiment_name=config.log_name, tracking_uri=uri))
        elif name == "wandb":
            from pytorch_lightning.loggers import WandbLogger

            _require(name, "wandb")
            project = config.log_name.replace("/", "-")  # W&B project names take no slash
            loggers.append(WandbLogger(project=project, save_dir=LOG_ROOT))
        else:
            raise ConfigError(
                f"{config.config_path}: logger={name!r}; expected one of {', '.join(LOGGERS)}, "
                "a list of them or a Lightning logger"
            )
    return loggers


def _require(logger: str, package: str) -> None:
    try:
        __import__(package)
    except ImportError as error:
        raise ConfigError(
            f"logger={logger!r} needs the {package} package, which is not installed: "
            f"pip install {package}"
        ) from error


def resolve_resume(config: SimpleNamespace) -> str | None:
    """``resume_ckpt_path`` as a file: "auto" is the newest of ``<weights_path>/last.ckpt`` and a
    pre-emption checkpoint (``hpc_ckpt_<n>.ckpt``) there, or None (a fresh start) without one."""
    if config.resume_ckpt_path != "auto":
        return config.resume_ckpt_path
    folder = Path(config.weights_path)
    candidates = [folder / f"{LAST_CHECKPOINT_NAME}.ckpt", *folder.glob("hpc_ckpt_*.ckpt")]
    found = [path for path in candidates if path.is_file()]
    if not found:
        log.info("resume_ckpt_path='auto': no checkpoint in %s, starting fresh", folder)
        return None
    newest = max(found, key=lambda path: path.stat().st_mtime_ns)
    log.info("resume_ckpt_path='auto': resuming from %s", newest)
    return str(newest)


def check_fresh_weights_path(config: SimpleNamespace) -> None:
    """A run that does not resume starts in a ``weights_path`` free of checkpoints: another run's
    ``last.ckpt`` would be overwritten and its ``-best`` files mixed with this run's (the next
    stage could read either)."""
    folder = Path(config.weights_path)
    found = sorted(path.name for path in folder.glob("*.ckpt")) if folder.is_dir() else []
    if found and not config.resume_ckpt_path:
        raise ConfigError(
            f"weights_path {folder}: holds an earlier run's checkpoints ({preview(found)}); "
            "continue that run with --set resume_ckpt_path=auto, or start fresh with another "
            "--set weights_path=... (or run_name=...) or after moving them away"
        )


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
    """Trainer with TensorBoard logging, best + last checkpoints and the config's hardware settings.

    A training loader whose batch sampler splits its batches over the processes itself (a
    ``DomainBalancedBatchSampler``) keeps it under DDP: Lightning's DistributedSampler is not put
    in its place (the validation loaders are split by ``train`` in every case).
    """
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
        logger=make_loggers(config),
        default_root_dir=config.weights_path,
        callbacks=[
            best,
            last,
            LearningRateMonitor(logging_interval="step"),
            *reliability_callbacks(config, LAST_CHECKPOINT_NAME),
        ],
        plugins=[AtomicCheckpointIO(), *cluster_environment()],
        use_distributed_sampler=not shards_itself(getattr(config, "train_loader", None)),
    )


def shards_itself(loader) -> bool:
    """Whether ``loader``'s batch sampler gives each DDP process its own batches."""
    return isinstance(getattr(loader, "batch_sampler", None), DomainBalancedBatchSampler)


def cluster_environment() -> list:
    """Under SLURM, Lightning's SLURM environment with requeue on ``PREEMPTION_SIGNAL`` (submit
    with ``--signal=USR1@120``); elsewhere nothing (Lightning detects torchrun and the rest)."""
    if not SLURMEnvironment.detect():
        return []
    return [SLURMEnvironment(auto_requeue=True, requeue_signal=PREEMPTION_SIGNAL)]


def check_input_bands(config: SimpleNamespace) -> None:
    """Every dataset of the config must read the bands its network takes (a ``RasterInput``
    given to the network and not to a dataset would fail late, on the first batch)."""
    expected = getattr(config.net, "raster", None)
    val_loaders = config.val_loader
    if not isinstance(val_loaders, dict):
        val_loaders = {"val_loader": val_loaders}
    for name, loader in {"train_loader": config.train_loader, **val_loaders}.items():
        for dataset in _datasets_within(getattr(loader, "dataset", None)):
            check_same_input(
                dataset.raster,
                expected,
                f"{config.config_path}: a dataset of {name}",
                "the network",
                "; give both the same raster=...",
            )


def _datasets_within(dataset) -> list:
    """The datasets with a ``raster`` in ``dataset``, looking inside the wrappers (Subset,
    ConcatDataset, SelfTrainingDataset); a dataset of the user's own without one is not checked."""
    if dataset is None:
        return []
    if hasattr(dataset, "raster"):
        return [dataset]
    inner = list(getattr(dataset, "datasets", []))
    inner += [getattr(dataset, name, None) for name in ("dataset", "labelled", "pseudo_labelled")]
    return [found for d in inner if d is not None for found in _datasets_within(d)]


def train(
    config: SimpleNamespace, module_class=SupervisedModule
) -> tuple[pl.Trainer, pl.LightningModule]:
    """Run one training stage: initialise or resume, fit, and return the trainer and module."""
    check_input_bands(config)
    config.resume_ckpt_path = resolve_resume(config)
    check_fresh_weights_path(config)
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
    if "PL_GLOBAL_SEED" in os.environ:  # set by seed_everything
        log.info("seed %s", os.environ["PL_GLOBAL_SEED"])
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
