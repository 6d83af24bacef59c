"""The knowledge-distillation LightningModule: the supervised module plus a frozen teacher.

Training loss: the supervised loss alone in epochs ``< kd_warmup_epochs`` (the teacher is not run),
then ``kd_alpha * supervised + (1 - kd_alpha) * KD`` with KD from ``geoseg.utils.kd_utils``.
Validation, metrics, pictures and checkpoints are the supervised module's, unchanged.
"""

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from geoseg.errors import CheckpointError, ConfigError
from geoseg.models.loading import load_model
from geoseg.training.supervised import SupervisedModule, compile_in_place
from geoseg.utils.kd_utils import compute_kd_loss

# Where a user who has no teacher yet is sent.
TEACHER_STAGE = (
    "the teacher is trained by the supervised stage first, e.g. "
    "`python train_supervision.py -c config/biodiversity/teacher.py` writes "
    "model_weights/biodiversity/teacher/last.ckpt"
)


def load_teacher(path: str | os.PathLike, classes: tuple[str, ...]) -> nn.Module:
    """Rebuild the teacher saved in ``path`` (any registered architecture), frozen and in eval mode.

    Its class scheme must be the student's: the KD loss compares the two class by class.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: teacher checkpoint not found; {TEACHER_STAGE}")
    teacher = load_model(path)
    if tuple(teacher.spec.classes) != tuple(classes):
        raise CheckpointError(
            f"{path}: the teacher has {teacher.spec.num_classes} classes "
            f"({', '.join(teacher.spec.classes)}) but the student's config has {len(classes)} "
            f"({', '.join(classes)}); distil from a teacher trained on the student's class scheme"
        )
    return teacher.requires_grad_(False).eval()


class KDModule(SupervisedModule):
    """``SupervisedModule`` whose training loss adds confidence-masked distillation from a teacher.

    The teacher is frozen, always in eval mode (norm layers included), outside the optimizer, run
    without autograd, and kept out of the module's registered children: it is neither in the
    student's checkpoints (``load_model`` reads them strictly) nor wrapped by DDP. It follows the
    student's device lazily, so under DDP every process holds its own copy on its own device.
    When the teacher's checkpoint records another input normalisation than the student's, the
    batch is re-normalised for the teacher.

    Logged per step: ``train_loss`` (the total that is optimised), ``train/supervised_loss`` and,
    after the warm-up, ``train/kd_loss`` and ``kd/kept_fraction``.
    """

    def __init__(
        self,
        net: nn.Module,
        loss: nn.Module,
        optimizer: torch.optim.Optimizer,
        lr_scheduler,
        *,
        teacher: nn.Module,
        kd_temperature: float = 3.0,
        kd_alpha: float = 0.7,
        kd_confidence_threshold: float = 0.5,
        kd_warmup_epochs: int = 5,
        **kwargs,
    ):
        super().__init__(net, loss, optimizer, lr_scheduler, **kwargs)
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
        teacher_normalization = getattr(getattr(teacher, "spec", None), "normalization", None)
        scale, shift = _renormalization(self.normalization, teacher_normalization)
        # Buffers so that they follow the module's device; not persistent: not a weight.
        self.register_buffer("_teacher_input_scale", scale, persistent=False)
        self.register_buffer("_teacher_input_shift", shift, persistent=False)

    @classmethod
    def from_config(cls, config, **kwargs) -> "KDModule":
        """Build the module and load the teacher from a config loaded with KD_REQUIRED/KD_DEFAULTS."""
        teacher = load_teacher(config.teacher_ckpt_path, tuple(config.classes))
        try:
            return super().from_config(
                config,
                teacher=teacher,
                kd_temperature=config.kd_temperature,
                kd_alpha=config.kd_alpha,
                kd_confidence_threshold=config.kd_confidence_threshold,
                kd_warmup_epochs=config.kd_warmup_epochs,
                **kwargs,
            )
        except ConfigError as error:
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
        """img: (B, 3, H, W) normalised as for the student -> teacher logits (B, C, h, w)."""
        param = next(self._teacher.parameters(), None)
        if param is not None and param.device != img.device:
            self._teacher.to(img.device)
            param = next(self._teacher.parameters())
        if self._teacher_input_scale is not None:
            img = img * self._teacher_input_scale + self._teacher_input_shift
        if param is not None:
            img = img.to(param.dtype)  # "true" half precisions cast the batch, not the teacher
        output = self._teacher(img)
        return output[0] if isinstance(output, (tuple, list)) else output

    def distillation_step(self, batch: dict) -> tuple[Tensor, dict[str, Tensor]]:
        """The training loss of this epoch for ``batch`` and its terms, keyed by their log names."""
        supervised, logits = self.supervised_step(batch)
        terms = {"train/supervised_loss": supervised}
        if not self.is_distilling():
            return supervised, terms
        kd, kept_fraction = compute_kd_loss(
            logits,
            self.teacher_logits(batch["img"]),
            temperature=self.kd_temperature,
            confidence_threshold=self.kd_confidence_threshold,
            ignore_mask=batch["gt_semantic_seg"] == self.ignore_index,
        )
        terms["train/kd_loss"] = kd
        terms["kd/kept_fraction"] = kept_fraction
        return self.kd_alpha * supervised + (1.0 - self.kd_alpha) * kd, terms

    def training_step(self, batch: dict, batch_idx: int) -> Tensor:
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


def _renormalization(student: dict, teacher: dict | None) -> tuple[Tensor | None, Tensor | None]:
    """(scale, shift), each (1, 3, 1, 1), taking student-normalised images to the teacher's
    normalisation, or (None, None) when the two are the same."""
    if teacher is None:
        return None, None
    student_mean, student_std, teacher_mean, teacher_std = (
        torch.tensor(values, dtype=torch.float64).view(1, 3, 1, 1)
        for values in (student["mean"], student["std"], teacher["mean"], teacher["std"])
    )
    if torch.equal(student_mean, teacher_mean) and torch.equal(student_std, teacher_std):
        return None, None
    # (img * std_s + mean_s - mean_t) / std_t, with img = (rgb - mean_s) / std_s
    scale = student_std / teacher_std
    shift = (student_mean - teacher_mean) / teacher_std
    return scale.float(), shift.float()
