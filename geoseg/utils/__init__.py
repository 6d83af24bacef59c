"""Compatibility names: ``geoseg.utils.kd_utils.compute_kd_loss``."""
