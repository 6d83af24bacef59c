"""The supervised LightningModule: one network, one loss, confusion-matrix validation."""

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import TensorBoardLogger
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader, Subset

from geoseg.bands import picture
from geoseg.classes import colorize_mask, default_palette
from geoseg.datasets.mixing import BatchMix, mixed_loss
from geoseg.errors import ConfigError
from geoseg.metrics import confusion_matrix, format_scores_table, segmentation_scores
from geoseg.models.common import as_plain
from geoseg.models.record import CHECKPOINT_KEY, describe_model

# Checkpoint key of the last validation's confusion matrices (plain lists: weights_only loads).
VALIDATION_KEY = "geoseg_validation"
# Checkpoint key of what the training data says of its labels (a combined build's remap and label
# sets), when its dataset has a ``training_data_record()``; plain values.
TRAINING_DATA_KEY = "geoseg_training_data"


class SupervisedModule(pl.LightningModule):
    """Trains ``net`` with ``loss`` and validates on one or several named validation sets.

    ``loss`` is any ``(logits, target) -> scalar``. A loss with an ``aux_weight`` above 0 (such as
    ``CEDiceLoss``) also supervises the network's auxiliary head, when it has one: it then gets
    ``((logits, aux_logits), target)`` from ``net.forward_with_aux``. A loss with a
    ``set_epoch(epoch)`` method (``TruncatedCrossEntropyLoss``, for its warm-up) is given the
    0-based epoch at the start of every training epoch, also of a resumed run.

    The first validation set is the primary one: its scores are logged as ``val_mIoU``,
    ``val_IoU/<class>``, ...; further sets as ``val_<name>_mIoU``, ``val_<name>_IoU/<class>``.
    Confusion matrices accumulate on the device and are summed across processes before scoring;
    the last validation's are kept in ``last_val_confusion`` (name -> (C, C) int64 on the CPU) and
    saved in checkpoints under ``"geoseg_validation"``. ``compile`` (True or a dict of
    ``torch.compile`` arguments) compiles the network in place. ``batch_mix`` (``CutMix``,
    ``ClassMix`` or ``MixUp`` from ``geoseg.datasets``) mixes each training batch before the
    forward pass; validation batches are never mixed. Checkpoints written while training on a
    combined build record its remap and label sets under ``"geoseg_training_data"``.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler,
        *,
        classes: tuple[str, ...],
        ignore_index: int,
        palette: tuple | None = None,
        val_set_names: tuple[str, ...] = ("val",),
        num_logged_images: int = 4,
        compile: bool | dict = False,
        batch_mix: BatchMix | None = None,
    ):
        super().__init__()
        original = getattr(net, "_orig_mod", None)
        if isinstance(original, nn.Module):
            # torch.compile(net) in a config: its weights' names would carry "_orig_mod.". The same
            # network compiled in place keeps the plain names that checkpoints and load_model use.
            net, compile = original, compile or True
        self.net = compile_in_place(net, compile)
        self.loss = loss
        has_aux_head = getattr(net, "has_aux_head", False)
        self.uses_aux_head = has_aux_head and bool(getattr(loss, "aux_weight", 0))
        if has_aux_head and not self.uses_aux_head:
            # Unused parameters would stop DDP at its second step: freeze the head the loss ignores.
            net.decoder.aux_head.requires_grad_(False)
        self.optimizer = optimizer
        self.lr_scheduler = lr_scheduler
        self.classes = tuple(classes)
        self.ignore_index = ignore_index
        self.palette = tuple(palette) if palette else default_palette(len(self.classes))
        self.val_set_names = tuple(val_set_names)
        self.num_logged_images = num_logged_images
        if batch_mix is not None and not isinstance(batch_mix, BatchMix):
            raise ConfigError(
                f"batch_mix={batch_mix!r}: expected None or a mixing transform such as "
                "ClassMix(p=0.5), CutMix(p=0.5) or MixUp(p=0.5) from geoseg.datasets"
            )
        self.batch_mix = batch_mix
        self.last_val_confusion: dict[str, torch.Tensor] = {}
        self.last_val_epoch: int | None = None
        num_classes = len(self.classes)
        for index in range(len(self.val_set_names)):
            # Not persistent: metric state is rebuilt every epoch and has no place in checkpoints.
            self.register_buffer(
                f"_val_confusion_{index}",
                torch.zeros(num_classes, num_classes, dtype=torch.long),
                persistent=False,
            )

    @classmethod
    def from_config(cls, config, **kwargs) -> "SupervisedModule":
        """Build the module from a loaded config namespace (see geoseg.config)."""
        _check_config_normalization(config)
        val_loaders = config.val_loader
        names = tuple(val_loaders) if isinstance(val_loaders, dict) else ("val",)
        return cls(
            config.net,
            config.loss,
            config.optimizer,
            config.lr_scheduler,
            classes=config.classes,
            ignore_index=config.ignore_index,
            palette=config.palette,
            val_set_names=names,
            num_logged_images=config.num_logged_images,
            compile=config.compile,
            batch_mix=config.batch_mix,
            **kwargs,
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        """img: (B, 3, H, W) on its native scale -> logits (B, C, H, W)."""
        return self.net(img)

    def configure_optimizers(self):
        if self.lr_scheduler is None:
            return self.optimizer
        scheduler = self.lr_scheduler
        if not isinstance(scheduler, dict):
            scheduler = {"scheduler": scheduler, "interval": "epoch"}
        return {"optimizer": self.optimizer, "lr_scheduler": scheduler}

    # --- training -----------------------------------------------------------------------------

    def mix_batch(self, batch: dict) -> dict:
        """The training batch after ``batch_mix`` (unchanged without one)."""
        return batch if self.batch_mix is None else self.batch_mix(batch)

    def supervised_step(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward the batch; return (supervised loss, main logits (B, C, H, W)). For a MixUp
        batch the loss is the same blend of the two targets' losses as of the images."""
        if self.uses_aux_head:
            output = self.net.forward_with_aux(batch["img"])
            logits = output[0]
        else:
            output = logits = self.net(batch["img"])
        return mixed_loss(self.loss, output, batch), logits

    def on_train_epoch_start(self) -> None:
        set_epoch = getattr(self.loss, "set_epoch", None)
        if callable(set_epoch):
            set_epoch(self.current_epoch)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        batch = self.mix_batch(batch)
        loss, _ = self.supervised_step(batch)
        self.log_train_loss(loss, len(batch["img"]))
        return loss

    def log_train_loss(self, loss: torch.Tensor, batch_size: int) -> None:
        """Log the loss that is optimised as ``train_loss`` (per step and per epoch)."""
        self.log(
            "train_loss",
            loss,
            on_step=True,
            on_epoch=True,
            prog_bar=True,
            sync_dist=True,
            batch_size=batch_size,
        )

    # --- validation ---------------------------------------------------------------------------

    def _confusion(self, set_index: int) -> torch.Tensor:
        return getattr(self, f"_val_confusion_{set_index}")

    def _prefix(self, set_index: int) -> str:
        return "val_" if set_index == 0 else f"val_{self.val_set_names[set_index]}_"

    def validation_step(self, batch: dict, batch_idx: int, dataloader_idx: int = 0) -> None:
        groups = size_groups(batch)
        results = [self._validate_group(group, dataloader_idx) for group in groups]
        losses = [loss for loss, _ in results]
        sizes = [len(group["img"]) for group in groups]
        # One value per step: the groups' losses weighted by their sample counts.
        loss = losses[0] if len(groups) == 1 else sum(map(torch.mul, losses, sizes)) / sum(sizes)
        self.log(
            f"{self._prefix(dataloader_idx)}loss",
            loss,
            on_epoch=True,
            sync_dist=True,
            add_dataloader_idx=False,
            batch_size=sum(sizes),
        )
        if dataloader_idx == 0 and batch_idx == 0 and not self.trainer.sanity_checking:
            self._log_predictions(groups[0], results[0][1])

    def _validate_group(
        self, batch: dict, dataloader_idx: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Forward one batch of same-size tiles, add it to the confusion matrix; (loss, pred)."""
        logits = self.net(batch["img"])
        loss = self.loss(logits, batch["gt_semantic_seg"])
        pred = logits.argmax(dim=1)
        self._confusion(dataloader_idx).add_(
            confusion_matrix(pred, batch["gt_semantic_seg"], len(self.classes), self.ignore_index)
        )
        return loss, pred

    def on_validation_epoch_end(self) -> None:
        for index, name in enumerate(self.val_set_names):
            # Single-device strategies return the tensor itself: reduce a copy, then reset.
            confusion = self.trainer.strategy.reduce(
                self._confusion(index).clone(), reduce_op="sum"
            )
            self._confusion(index).zero_()
            if self.trainer.sanity_checking or confusion.sum() == 0:
                continue
            self.last_val_confusion[name] = confusion = confusion.cpu()
            self.last_val_epoch = self.current_epoch
            scores = segmentation_scores(confusion, self.classes)
            prefix = self._prefix(index)
            # Already summed over processes, so every rank logs the same values.
            metrics = {f"{prefix}mIoU": scores["mIoU"], f"{prefix}mF1": scores["mF1"]}
            metrics[f"{prefix}OA"] = scores["OA"]
            for class_name, class_scores in scores["per_class"].items():
                if class_scores["IoU"] is not None:
                    metrics[f"{prefix}IoU/{class_name}"] = class_scores["IoU"]
            self.log_dict(metrics, add_dataloader_idx=False)
            rank_zero_info(
                f"\nepoch {self.current_epoch} validation '{name}':\n{format_scores_table(scores)}"
            )

    def _log_predictions(self, batch: dict, pred: torch.Tensor) -> None:
        """Log image | ground truth | prediction rows for the first images of the batch."""
        if not isinstance(self.logger, TensorBoardLogger) or self.num_logged_images <= 0:
            return
        rows = []
        for index in range(min(self.num_logged_images, len(pred))):
            image = picture(batch["img"][index], getattr(self.net, "raster", None))
            mask = batch["gt_semantic_seg"][index].cpu().numpy().astype(np.uint8)
            prediction = pred[index].cpu().numpy().astype(np.uint8)
            colours = [
                colorize_mask(m, self.palette, self.ignore_index) for m in (mask, prediction)
            ]
            rows.append(np.concatenate([image, *colours], 1))
        self.logger.experiment.add_image(
            "val_predictions", np.concatenate(rows, 0), self.global_step, dataformats="HWC"
        )

    # --- checkpoints --------------------------------------------------------------------------

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        spec = describe_model(self.net, self.classes, self.ignore_index, self.palette)
        checkpoint[CHECKPOINT_KEY] = spec.to_dict()
        if self.last_val_confusion:
            checkpoint[VALIDATION_KEY] = {
                "epoch": self.last_val_epoch,
                "confusion_matrix": {k: v.tolist() for k, v in self.last_val_confusion.items()},
            }
        trainer = self._trainer  # None outside a Trainer (self.trainer would raise)
        record = None if trainer is None else training_data_record(trainer.train_dataloader)
        if record is not None:
            checkpoint[TRAINING_DATA_KEY] = as_plain(record, TRAINING_DATA_KEY)


def training_data_record(loaders) -> dict | None:
    """The ``training_data_record()`` of the training data (a combined build's remap, label sets
    and root), looking through DataLoaders, dicts/lists of them, ``Subset`` and ``ConcatDataset``;
    ``{"datasets": [...]}`` when several differ; None when no dataset has one."""
    records = []
    _collect_records(loaders, records, depth=0)
    unique = [r for i, r in enumerate(records) if r not in records[:i]]
    if not unique:
        return None
    return unique[0] if len(unique) == 1 else {"datasets": unique}


def _collect_records(item, records: list, depth: int) -> None:
    if item is None or depth > 8:  # a wrapper chain this deep is not ours to guess at
        return
    if isinstance(item, DataLoader):
        _collect_records(item.dataset, records, depth + 1)
    elif isinstance(item, dict):
        for value in item.values():
            _collect_records(value, records, depth + 1)
    elif isinstance(item, (list, tuple)):
        for value in item:
            _collect_records(value, records, depth + 1)
    elif isinstance(item, ConcatDataset):
        for dataset in item.datasets:
            _collect_records(dataset, records, depth + 1)
    elif isinstance(item, Subset):
        _collect_records(item.dataset, records, depth + 1)
    elif callable(getattr(item, "training_data_record", None)):
        record = item.training_data_record()
        if record is not None:
            records.append(record)


def size_groups(batch: dict) -> list[dict]:
    """The same-size batches of a validation batch (see ``geoseg.training.data.collate_tiles``):
    ``batch["size_groups"]`` for tiles of several sizes, else ``[batch]``."""
    return batch.get("size_groups", [batch])


def _check_config_normalization(config) -> None:
    """A config's ``normalization`` name (now the network's own argument) must agree with it."""
    if config.normalization is None:
        return
    own = getattr(config.net, "init_args", {}).get("normalization")
    if as_plain(config.normalization) != as_plain(own):
        raise ConfigError(
            f"{config.config_path}: normalization={config.normalization!r} differs from the "
            f"network's own ({own!r}). Networks apply their input normalisation themselves: pass "
            "normalization=... to the network's constructor and drop the config's name"
        )


def compile_in_place(net: nn.Module, options: bool | dict) -> nn.Module:
    """``net`` compiled with ``nn.Module.compile`` when ``options`` is True or a dict of
    ``torch.compile`` arguments; unlike ``torch.compile(net)`` its state_dict keys stay the same."""
    if options:
        net.compile(**(options if isinstance(options, dict) else {}))
    return net
