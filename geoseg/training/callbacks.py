"""Training that survives interruption and stops cleanly when it diverges.

- ``AtomicCheckpointIO``: every checkpoint Lightning writes (``last.ckpt``, the best one) goes to a
  hidden temporary file in the same folder, is flushed to disk and renamed over the old file, so a
  kill or a full disk during the write leaves the previous checkpoint intact. Lightning's own
  writer stages the file in the system temporary folder and moves it, which is a plain copy, not
  a rename, whenever that folder is on another file system. Resuming reads checkpoints with
  ``weights_only=True``.
- ``step_checkpoint``: ``last.ckpt`` every ``checkpoint_every_n_steps`` optimizer steps as well
  as after every epoch; a run killed mid-epoch resumes from that step.
- ``NonFiniteGuard``: stops at the first non-finite training loss, before its backward pass, with
  the epoch, the step and the batch's image ids, and never lets non-finite weights be saved: the
  last checkpoint on disk stays the last good state.
"""

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Callback, ModelCheckpoint

from geoseg.errors import ConfigError, TrainingError
from geoseg.models.checkpoint import save_checkpoint_atomic

log = logging.getLogger(__name__)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer and reader: atomic local writes, weights-only reads."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's way
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        save_checkpoint_atomic(checkpoint, path)

    def load_checkpoint(self, path, map_location=None, weights_only: bool | None = None) -> dict:
        # Whatever the caller asks: a checkpoint never runs pickled code (they hold plain values).
        # Without map_location, Lightning's default applies: tensors stay on the CPU.
        kwargs = {} if map_location is None else {"map_location": map_location}
        return super().load_checkpoint(path, weights_only=True, **kwargs)


def step_checkpoint(config: SimpleNamespace, filename: str) -> ModelCheckpoint | None:
    """``<weights_path>/<filename>.ckpt`` every ``config.checkpoint_every_n_steps`` optimizer steps
    (None when that is 0 or None)."""
    every = config.checkpoint_every_n_steps
    if every is None or every == 0:
        return None
    if isinstance(every, bool) or not isinstance(every, int) or every < 0:
        raise ConfigError(
            f"{config.config_path}: checkpoint_every_n_steps={every!r}; expected a whole number "
            "of optimizer steps >= 0 (0 or None: only after every epoch)"
        )
    return ModelCheckpoint(
        dirpath=config.weights_path,
        filename=filename,
        every_n_train_steps=every,
        enable_version_counter=False,
    )


class NonFiniteGuard(Callback):
    """Stop at the first non-finite loss, before its backward pass changes any weight.

    Under DDP the decision is shared, so every process stops at the same step. Saving weights that
    are not finite (e.g. after an overflowing gradient with a finite loss) is refused too.
    """

    def __init__(self, last_checkpoint: str | Path | None = None):
        self.last_checkpoint = last_checkpoint
        self._img_ids: list[str] | None = None
        self._batch_idx = 0

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._img_ids = batch.get("img_id") if isinstance(batch, dict) else None
        self._batch_idx = batch_idx

    def on_before_backward(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor
    ) -> None:
        finite_here = bool(torch.isfinite(loss.detach()).all())
        stop = not finite_here
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        if finite_here:
            where = "on another process"
        else:
            ids = ", ".join(map(str, self._img_ids)) if self._img_ids is not None else "unknown"
            where = f"(value {loss.detach().float().mean().item()}); images: {ids}"
        raise TrainingError(
            f"non-finite training loss at epoch {trainer.current_epoch}, batch {self._batch_idx} "
            f"of the epoch, after {trainer.global_step} optimizer steps {where}. Stopped before "
            f"its backward pass: {self._kept()}. Try a lower learning rate, gradient_clip_val = "
            "1.0 in the config, precision = '32-true' to rule out overflow, and check these "
            "images and their masks"
        )

    def on_save_checkpoint(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        bad = [
            name
            for name, tensor in checkpoint.get("state_dict", {}).items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
        if bad:
            raise TrainingError(
                f"non-finite weights ({', '.join(bad[:3])}{' ...' if len(bad) > 3 else ''}) at "
                f"epoch {trainer.current_epoch}, after {trainer.global_step} optimizer steps; "
                f"not saved: {self._kept()}. Try a lower learning rate or gradient_clip_val = 1.0"
            )

    def _kept(self) -> str:
        if self.last_checkpoint and Path(self.last_checkpoint).is_file():
            return f"{self.last_checkpoint} keeps the last good state; resume from it"
        return "no checkpoint had been written yet"


def reliability_callbacks(config: SimpleNamespace, last_name: str) -> list[Callback]:
    """The step checkpoint of ``<weights_path>/<last_name>.ckpt`` (if enabled) and the guard."""
    steps = step_checkpoint(config, last_name)
    guard = NonFiniteGuard(Path(config.weights_path) / f"{last_name}.ckpt")
    return [guard] if steps is None else [steps, guard]
