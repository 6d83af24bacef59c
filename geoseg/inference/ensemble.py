"""An ensemble loaded once from its checkpoints, then called on folders or scenes."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from geoseg.inference.tta import (
    EnsemblePredictor,
    check_same_bands,
    check_same_classes,
    check_same_ignore_index,
)
from geoseg.models import ModelSpec, load_model_and_spec


@dataclass(frozen=True)
class Ensemble:
    """The members of ``checkpoints`` (one class scheme, ignore id and set of bands) in a
    predictor with their TTA settings, on ``device``."""

    checkpoints: list[Path]
    predictor: EnsemblePredictor
    specs: list[ModelSpec]
    device: torch.device

    @classmethod
    def load(
        cls,
        checkpoints: Sequence[Path],
        *,
        scales: Sequence[float],
        flips: Sequence[str],
        merge: str,
        device: torch.device,
        precision: str,
        weights: Sequence[float] | None = None,
    ) -> "Ensemble":
        """Load every member once, before any input is read; ``weights`` None: equal."""
        models, specs = zip(*(load_model_and_spec(path) for path in checkpoints), strict=True)
        names = [str(path) for path in checkpoints]
        check_same_classes(specs, names)
        check_same_ignore_index(specs, names)
        check_same_bands(specs, names)
        predictor = EnsemblePredictor(
            models,
            scales=scales,
            flips=flips,
            merge=merge,
            device=device,
            precision=precision,
            weights=weights,
        )
        return cls(list(checkpoints), predictor, list(specs), device)

    @property
    def spec(self) -> ModelSpec:
        """What the members share (classes, ignore id, palette, bands): the first member's spec."""
        return self.specs[0]
