"""``compute_kd_loss`` under the name the recipe uses; the loss lives in ``geoseg.losses.kd``."""

from geoseg.losses.kd import compute_kd_loss

__all__ = ["compute_kd_loss"]
