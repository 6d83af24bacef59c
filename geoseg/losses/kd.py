"""The confidence-masked knowledge-distillation loss.

KD = T^2 * (1 / |Omega|) * sum_{p in Omega} sum_c q_c(p) * (log q_c(p) - log r_c(p)),
q = softmax(teacher / T), r = softmax(student / T), Omega = the pixels whose teacher confidence
max_c softmax(teacher)_c (at T = 1) is >= the threshold and that are not ignored.

The loss is a mean over kept pixels, so it does not grow with the image area or the batch size, and
the T^2 factor keeps its gradients on the scale of the supervised loss's whatever the temperature.
"""

import torch
import torch.nn.functional as F
from torch import Tensor


def compute_kd_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float = 3.0,
    confidence_threshold: float = 0.5,
    ignore_mask: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Confidence-masked, temperature-scaled KL(teacher || student), in float32.

    student_logits: (B, C, H, W) raw scores; teacher_logits: (B, C, h, w) raw scores, resized
    (bilinear) to (H, W) when h, w differ; ignore_mask: (B, H, W) bool, True where a pixel is left
    out (ground truth ``ignore_index``). Returns ``(loss, kept_fraction)``, two 0-d float32 tensors:
    the loss (0 with zero gradients when no pixel is kept) and |Omega| / (pixels not ignored), 0
    when every pixel is ignored. Gradients flow into the student only.
    """
    if student_logits.ndim != 4 or teacher_logits.ndim != 4:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)}: expected (B, C, H, W) both"
        )
    if student_logits.shape[:2] != teacher_logits.shape[:2]:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits "
            f"{tuple(teacher_logits.shape)}: batch size and class count must match"
        )
    batch, _, height, width = student_logits.shape
    if ignore_mask is not None and ignore_mask.shape != (batch, height, width):
        raise ValueError(
            f"ignore_mask {tuple(ignore_mask.shape)}: expected (B, H, W) = {(batch, height, width)}"
        )
    if temperature <= 0:
        raise ValueError(f"temperature={temperature}: expected a positive number")

    # Autocast off: the log-softmaxes and the sums must stay in float32 under mixed precision.
    with torch.autocast(device_type=student_logits.device.type, enabled=False):
        student = student_logits.float()
        teacher = teacher_logits.detach().float()
        if teacher.shape[2:] != student.shape[2:]:
            teacher = F.interpolate(
                teacher, size=(height, width), mode="bilinear", align_corners=False
            )

        confidence = teacher.softmax(dim=1).amax(dim=1)  # (B, H, W), teacher at T = 1
        kept = confidence >= confidence_threshold
        if ignore_mask is None:
            num_valid = torch.tensor(float(kept.numel()), device=kept.device)
        else:
            ignore_mask = ignore_mask.to(device=kept.device, dtype=torch.bool)
            kept = kept & ~ignore_mask
            num_valid = (~ignore_mask).sum().float()

        log_q = F.log_softmax(teacher / temperature, dim=1)
        log_r = F.log_softmax(student / temperature, dim=1)
        # q * (log q - log r) summed over classes; log_softmax keeps both logs finite.
        kl = (log_q.exp() * (log_q - log_r)).sum(dim=1)  # (B, H, W)
        num_kept = kept.sum().float()
        # where() rather than a multiply: nothing from a left-out pixel reaches the sum or the
        # gradients, and dividing by 1 when nothing is kept gives an exact 0 (no host sync).
        loss = torch.where(kept, kl, torch.zeros_like(kl)).sum() / num_kept.clamp_min(1.0)
        kept_fraction = num_kept / num_valid.clamp_min(1.0)
    return loss * temperature**2, kept_fraction
