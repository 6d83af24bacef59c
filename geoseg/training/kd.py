"""The knowledge-distillation LightningModule: the supervised module plus a frozen teacher.

Training loss: the supervised loss alone in epochs ``< kd_warmup_epochs`` (the teacher is not run),
then ``kd_alpha * supervised + (1 - kd_alpha) * KD`` with KD from ``geoseg.losses.kd``.
Validation, metrics, pictures and checkpoints are the supervised module's, unchanged.
"""

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from geoseg.bands import RasterInput, check_same_input
from geoseg.config import KD_DEFAULTS, KD_REQUIRED, KD_SETTINGS  # noqa: F401 (re-exported)
from geoseg.datasets.mixing import ignore_mask
from geoseg.errors import CheckpointError, ConfigError
from geoseg.losses.kd import compute_kd_loss
from geoseg.models.checkpoint import load_model_and_spec
from geoseg.training.supervised import SupervisedModule, compile_in_place


def load_teacher(
    path: str | os.PathLike,
    classes: tuple[str, ...],
    config_path: str | None = None,
    raster: RasterInput | None = None,
) -> nn.Module:
    """Rebuild the teacher saved in ``path`` (any registered architecture), frozen and in eval mode.

    Its class scheme must be the student's: the KD loss compares the two class by class; and it
    must read the bands the student reads (``raster``), since it sees the student's batches.
    """
    path = Path(path)
    if not path.is_file():
        where = (
            f" ({config_path}'s docstring names the stage that writes it)" if config_path else ""
        )
        raise CheckpointError(
            f"{path}: teacher checkpoint not found; train the teacher with the supervised stage "
            f"first{where}"
        )
    teacher, spec = load_model_and_spec(path)
    if tuple(spec.classes) != tuple(classes):
        raise CheckpointError(
            f"{path}: the teacher has {spec.num_classes} classes "
            f"({', '.join(spec.classes)}) but the student's config has {len(classes)} "
            f"({', '.join(classes)}); distil from a teacher trained on the student's class scheme"
        )
    check_same_input(
        spec.raster,
        raster,
        f"{path}: the teacher",
        "the student",
        "; distil from a teacher of the same bands",
    )
    return teacher.requires_grad_(False).eval()


class KDModule(SupervisedModule):
    """``SupervisedModule`` whose training loss adds confidence-masked distillation from a teacher.

    The teacher is frozen, always in eval mode (norm layers included), outside the optimizer, run
    without autograd, and kept out of the module's registered children: it is neither in the
    student's checkpoints (``load_model`` reads them strictly) nor wrapped by DDP. It follows the
    student's device lazily, so under DDP every process holds its own copy on its own device.
    Both networks take the batch on its native scale and apply their own normalisation.

    Logged per step: ``train_loss`` (the total that is optimised), ``train/supervised_loss`` and,
    after the warm-up, ``train/kd_loss`` and ``kd/kept_fraction``.
    """

    def __init__(
        self,
        *args,
        teacher: nn.Module,
        kd_temperature: float = KD_SETTINGS["kd_temperature"],
        kd_alpha: float = KD_SETTINGS["kd_alpha"],
        kd_confidence_threshold: float = KD_SETTINGS["kd_confidence_threshold"],
        kd_warmup_epochs: int = KD_SETTINGS["kd_warmup_epochs"],
        **kwargs,
    ):
        """The arguments of ``SupervisedModule``, the frozen ``teacher`` and the KD settings."""
        super().__init__(*args, **kwargs)
        _check_kd_settings(kd_temperature, kd_alpha, kd_confidence_threshold, kd_warmup_epochs)
        self.kd_temperature = float(kd_temperature)
        self.kd_alpha = float(kd_alpha)
        self.kd_confidence_threshold = float(kd_confidence_threshold)
        self.kd_warmup_epochs = int(kd_warmup_epochs)
        # object.__setattr__ bypasses nn.Module's registration: the teacher stays out of
        # state_dict(), parameters(), .train() and the DDP wrapper.
        object.__setattr__(self, "_teacher", teacher.requires_grad_(False).eval())
        # Its forward pass is about a third of a KD step: compiled along with the student.
        compile_in_place(teacher, kwargs.get("compile", False))

    @classmethod
    def from_config(cls, config, **kwargs) -> "KDModule":
        """Build the module and load the teacher from a config loaded with KD_REQUIRED/KD_DEFAULTS."""
        teacher = load_teacher(
            config.teacher_ckpt_path,
            tuple(config.classes),
            config.config_path,
            getattr(config.net, "raster", None),
        )
        settings = {name: getattr(config, name) for name in KD_SETTINGS}
        try:
            return super().from_config(config, teacher=teacher, **settings, **kwargs)
        except ConfigError as error:
            if str(error).startswith(config.config_path):
                raise
            raise ConfigError(f"{config.config_path}: {error}") from error

    @property
    def teacher(self) -> nn.Module:
        """The frozen teacher network (not a registered submodule)."""
        return self._teacher

    def train(self, mode: bool = True) -> "KDModule":
        super().train(mode)
        self._teacher.eval()  # whatever Lightning or a user toggles, the teacher stays in eval
        return self

    def is_distilling(self) -> bool:
        """False during the warm-up epochs, in which the loss is the supervised one alone."""
        return self.current_epoch >= self.kd_warmup_epochs

    # torch.no_grad rather than inference_mode: the KD loss saves the teacher's outputs for the
    # student's backward pass, which inference tensors may not be.
    @torch.no_grad()
    def teacher_logits(self, img: Tensor) -> Tensor:
        """img: (B, bands, H, W) on its native scale -> teacher logits (B, C, h, w)."""
        param = next(self._teacher.parameters(), None)
        if param is not None and param.device != img.device:
            self._teacher.to(img.device)
            param = next(self._teacher.parameters())
        if param is not None:
            img = img.to(param.dtype)  # "true" half precisions cast the batch, not the teacher
        return self._teacher(img)

    def distillation_step(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss of this epoch for ``batch`` (already mixed, if ``batch_mix`` is set:
        the teacher sees the mixed images) and its terms, keyed by their log names."""
        supervised, logits = self.supervised_step(batch)
        terms = {"train/supervised_loss": supervised}
        if not self.is_distilling():
            return supervised, terms
        kd, kept_fraction = compute_kd_loss(
            logits,
            self.teacher_logits(batch["img"]),
            temperature=self.kd_temperature,
            confidence_threshold=self.kd_confidence_threshold,
            ignore_mask=ignore_mask(batch, self.ignore_index),
        )
        terms["train/kd_loss"] = kd
        terms["kd/kept_fraction"] = kept_fraction
        return self.kd_alpha * supervised + (1.0 - self.kd_alpha) * kd, terms

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
        batch = self.mix_batch(batch)
        loss, terms = self.distillation_step(batch)
        batch_size = len(batch["img"])
        self.log_dict(terms, on_step=True, on_epoch=False, sync_dist=True, batch_size=batch_size)
        self.log_train_loss(loss, batch_size)
        return loss


def _check_kd_settings(temperature, alpha, threshold, warmup_epochs) -> None:
    problems = []
    if not temperature > 0:
        problems.append(f"kd_temperature={temperature!r}: expected a positive number")
    if not 0.0 <= alpha <= 1.0:
        problems.append(f"kd_alpha={alpha!r}: expected a weight in [0, 1] (on the supervised term)")
    if not 0.0 <= threshold <= 1.0:
        problems.append(f"kd_confidence_threshold={threshold!r}: expected a probability in [0, 1]")
    if isinstance(warmup_epochs, bool) or int(warmup_epochs) != warmup_epochs or warmup_epochs < 0:
        problems.append(f"kd_warmup_epochs={warmup_epochs!r}: expected a whole number >= 0")
    if problems:
        raise ConfigError("; ".join(problems))
