"""Test-time augmentation and ensembles: every model x scale x flip, merged into one map.

For every model m, scale s and flip f: resize the image by s (bilinear), run m (which normalises
its input itself), undo f, resize the logits back to the input size (bilinear) and accumulate. The
merged map is the mean of the logits (default) or of the softmax probabilities; the prediction is
its argmax. The flips of one scale go through the model as one batch. With member weights w_m
(normalised to sum 1), the mean over members is weighted: sum_m w_m x mean over (s, f).

Precision: the networks run under bf16 autocast on GPUs that support bf16 and on CPUs that compute
bf16 in hardware (``geoseg.hardware.native_bf16``), in float32 elsewhere (``precision="auto"``);
the logits are cast to float32 before they are merged, so the merge and the argmax are float32.

A merged map holding NaN or inf (a broken network, or bf16 overflow) is a PredictionError naming
the images of the batch it affects: the callers add the file names and write no map.
"""

import math
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from geoseg.bands import RasterInput, check_same_input
from geoseg.errors import CheckpointError, PredictionError
from geoseg.hardware import native_bf16
from geoseg.inference.windows import blend_window, check_overlap, tile_starts
from geoseg.models.checkpoint import ModelSpec

FLIPS = {"none": None, "h": -1, "v": -2}  # flip name -> the tensor dimension it reverses
MERGES = ("logits", "probs")
PRECISIONS = ("auto", "bf16", "fp32")
# The largest TTA resize factor: 8x an image's side is 64x its pixels, beyond any useful TTA and
# soon beyond memory.
MAX_SCALE = 8.0


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The dtype inference autocasts to on ``device`` (None: float32 throughout).

    "auto": bf16 on a GPU that supports it and on a CPU with native bf16, float32 elsewhere (bf16
    emulated through float32 is slower than float32); "bf16" and "fp32" force one.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            bf16 = torch.cuda.is_bf16_supported()
        else:
            bf16 = device.type == "cpu" and native_bf16()
        precision = "bf16" if bf16 else "fp32"
    return torch.bfloat16 if precision == "bf16" else None


def parse_flips(text: str) -> tuple[str, ...]:
    """``"none,h,v"`` -> ("none", "h", "v"); unknown or repeated names are an error (a repeated
    one would compute the same pass twice and weigh it double)."""
    flips = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in flips if name not in FLIPS]
    if unknown or not flips:
        raise ValueError(f"flips {text!r}: expected a comma-separated subset of {list(FLIPS)}")
    _refuse_repeats("flips", text, flips)
    return flips


def parse_scales(text: str) -> tuple[float, ...]:
    """``"0.75,1.0,1.25"`` -> (0.75, 1.0, 1.25); each scale a finite factor in (0, MAX_SCALE]."""
    values = [value.strip() for value in text.split(",") if value.strip()]
    if not values:
        raise ValueError(f"scales {text!r}: expected comma-separated numbers")
    scales = []
    for value in values:
        try:
            scale = float(value)
        except ValueError as error:
            raise ValueError(f"scales {text!r}: expected comma-separated numbers") from error
        if not (math.isfinite(scale) and 0 < scale <= MAX_SCALE):
            raise ValueError(
                f"scales {text!r}: {value!r}: a scale must be a finite factor in (0, {MAX_SCALE:g}]"
            )
        scales.append(scale)
    scales = tuple(scales)
    _refuse_repeats("scales", text, scales)
    return scales


def parse_weights(text: str, members: int, name: str = "weights") -> tuple[float, ...]:
    """``"0.5,0.3,0.2"`` -> (0.5, 0.3, 0.2): one finite, non-negative weight per member, not all
    zero (they are normalised to sum 1 by ``EnsemblePredictor``); errors start with ``name``."""
    try:
        weights = tuple(float(value) for value in text.split(","))
    except ValueError as error:
        raise ValueError(f"{name} {text!r}: expected comma-separated numbers") from error
    check_weights(weights, members, f"{name} {text!r}")
    return weights


def check_weights(weights: Sequence[float], members: int, name: str = "weights") -> None:
    """One finite, non-negative weight per member, not all zero; else ValueError naming them."""
    if len(weights) != members:
        raise ValueError(f"{name}: {len(weights)} weights for {members} members; expected one each")
    if not all(math.isfinite(w) and w >= 0 for w in weights):
        raise ValueError(f"{name}: expected finite, non-negative numbers")
    if not any(w > 0 for w in weights):
        raise ValueError(f"{name}: all zero; expected at least one positive weight")


def _refuse_repeats(name: str, text: str, values: tuple) -> None:
    repeated = sorted({value for value in values if values.count(value) > 1}, key=str)
    if repeated:
        raise ValueError(
            f"{name} {text!r}: {', '.join(map(str, repeated))} given more than once (the same "
            "pass would be computed twice and count double)"
        )


def check_same_classes(specs: Sequence[ModelSpec], names: Sequence[str]) -> tuple[str, ...]:
    """The ensemble's class names; models trained on different class schemes cannot be averaged."""
    first = specs[0].classes
    for spec, name in zip(specs[1:], names[1:], strict=True):
        if spec.classes != first:
            raise CheckpointError(
                f"{name} predicts {spec.num_classes} classes {list(spec.classes)}, but "
                f"{names[0]} predicts {len(first)} classes {list(first)}: an ensemble needs one scheme"
            )
    return first


def check_same_ignore_index(specs: Sequence[ModelSpec], names: Sequence[str]) -> int:
    """The ensemble's ignore id; members that mark unlabelled pixels with different ids disagree
    on what their class ids mean beside the classes."""
    first = specs[0].ignore_index
    for spec, name in zip(specs[1:], names[1:], strict=True):
        if spec.ignore_index != first:
            raise CheckpointError(
                f"{name}: ignore id {spec.ignore_index}, but {names[0]}: ignore id {first}; "
                "an ensemble needs one ignore id"
            )
    return first


def check_same_bands(specs: Sequence[ModelSpec], names: Sequence[str]) -> RasterInput | None:
    """The bands every member reads (None: 8-bit RGB); members fed different bands cannot share
    one read of the input."""
    for spec, name in zip(specs[1:], names[1:], strict=True):
        check_same_input(
            spec.raster,
            specs[0].raster,
            name,
            f"but {names[0]} reads",
            ": an ensemble reads one set of bands",
        )
    return specs[0].raster


class EnsemblePredictor:
    """Merged TTA maps of several models (each from ``geoseg.models.load_model``).

    images: (B, C, H, W) on their native scale (0-255 RGB, raw band values); each model scales and
    normalises its input.

    ``weights`` (one per model, finite, non-negative, not all zero): the merge is the weighted mean
    over the models, weights normalised to sum 1; a model of weight 0 is not run. None (default):
    the plain mean over models x scales x flips, computed as it always was.
    """

    def __init__(
        self,
        models: Sequence[nn.Module],
        *,
        scales: Sequence[float] = (1.0,),
        flips: Sequence[str] = ("none",),
        merge: str = "logits",
        device: torch.device | str = "cpu",
        batch_flips: bool = True,
        precision: str = "auto",
        weights: Sequence[float] | None = None,
    ):
        if merge not in MERGES:
            raise ValueError(f"merge must be one of {MERGES}, got {merge!r}")
        self.device = torch.device(device)
        self.weights = None
        if weights is not None:
            check_weights([float(w) for w in weights], len(models))
            kept = [(model, float(w)) for model, w in zip(models, weights, strict=True) if w > 0]
            models = [model for model, _ in kept]
            self.weights = tuple(w / sum(w for _, w in kept) for _, w in kept)
        self.models = [model.to(self.device).eval() for model in models]
        self.scales, self.flips, self.merge = tuple(scales), tuple(flips), merge
        # One pass for all flips of a scale: never slower than a pass per flip where measured
        # (benchmarks/ensemble_tta.py; figures in docs/benchmarks.md).
        self.batch_flips = batch_flips
        self.autocast_dtype = autocast_dtype(self.device, precision)

    @property
    def passes(self) -> int:
        """Predictions merged per pixel: models x scales x flips."""
        return len(self.models) * len(self.scales) * len(self.flips)

    @property
    def precision(self) -> str:
        """ "bf16" or "fp32": what the networks run in."""
        return "fp32" if self.autocast_dtype is None else "bf16"

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    @torch.inference_mode()
    def merged(self, images: torch.Tensor) -> torch.Tensor:
        """images: (B, 3, H, W) 0-255 -> merged (B, C, H, W) float32 mean logits or probabilities.

        A map holding NaN or inf is a PredictionError whose ``images`` are the batch indices hit.
        """
        images = images.to(self.device, torch.float32)
        height, width = images.shape[-2:]
        total = None
        for index, model in enumerate(self.models):
            for scale in self.scales:
                size = (max(round(height * scale), 1), max(round(width * scale), 1))
                scaled = images
                if size != (height, width):
                    scaled = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
                for logits in self._unflipped_logits(model, scaled):
                    if logits.shape[-2:] != (height, width):
                        logits = F.interpolate(
                            logits, size=(height, width), mode="bilinear", align_corners=False
                        )
                    contribution = logits.softmax(dim=1) if self.merge == "probs" else logits
                    if self.weights is not None:
                        contribution = contribution * self.weights[index]
                    total = contribution if total is None else total + contribution
        if self.weights is None:
            merged = total / self.passes
        else:
            merged = total / (len(self.scales) * len(self.flips))
        self._check_finite(merged)
        return merged

    def _check_finite(self, merged: torch.Tensor) -> None:
        """merged: (B, C, H, W); a PredictionError naming the images that hold NaN or inf."""
        finite = torch.isfinite(merged).flatten(1).all(dim=1)
        if bool(finite.all()):
            return
        hint = (
            "bf16 can overflow: try float32 precision"
            if self.autocast_dtype is not None
            else "a model computes NaN or inf for this input; check its checkpoint"
        )
        images = tuple((~finite).nonzero().flatten().tolist())
        raise PredictionError(
            f"the models' merged output holds NaN or inf (precision {self.precision}; {hint}); "
            "no map written",
            images,
        )

    def _unflipped_logits(self, model: nn.Module, scaled: torch.Tensor) -> list[torch.Tensor]:
        """float32 logits of ``scaled`` under each flip, with the flip undone: one per flip."""
        with self._autocast():
            if self.batch_flips:
                stacked = torch.cat([_flip(scaled, flip) for flip in self.flips])
                outputs = model(stacked).chunk(len(self.flips))
            else:
                outputs = [model(_flip(scaled, flip)) for flip in self.flips]
        return [_flip(out.float(), flip) for out, flip in zip(outputs, self.flips, strict=True)]

    @torch.inference_mode()
    def merged_tiled(
        self, images: torch.Tensor, tile_size: int, overlap: int, tiles_per_batch: int = 4
    ) -> torch.Tensor:
        """Like ``merged``, tile by tile (sliding window) for images too large to predict whole.

        Tiles of ``tile_size`` overlap by ``overlap`` pixels; where they overlap, their merged maps
        are blended with weights that fall linearly towards the tile borders, so no seam shows.
        """
        check_overlap(overlap, tile_size)
        batch, _, height, width = images.shape
        if height <= tile_size and width <= tile_size:
            return self.merged(images)
        tops = tile_starts(height, tile_size, overlap)
        lefts = tile_starts(width, tile_size, overlap)
        tile_h, tile_w = min(tile_size, height), min(tile_size, width)
        weight = (
            blend_window(tile_h, overlap, self.device)[:, None]
            * blend_window(tile_w, overlap, self.device)[None, :]
        )
        total = weight_sum = None
        windows = [(top, left) for top in tops for left in lefts]
        for start in range(0, len(windows), tiles_per_batch):
            chunk = windows[start : start + tiles_per_batch]
            tiles = torch.cat([images[..., y : y + tile_h, x : x + tile_w] for y, x in chunk])
            try:
                merged = self.merged(tiles)
            except PredictionError as error:  # tiles are in window-major order: tile i x batch
                top, left = chunk[error.images[0] // batch]
                raise PredictionError(
                    f"tile at row {top}, column {left} ({tile_h} x {tile_w}): {error}",
                    tuple(sorted({index % batch for index in error.images})),
                ) from error
            if total is None:
                total = merged.new_zeros(batch, merged.shape[1], height, width)
                weight_sum = merged.new_zeros(1, 1, height, width)
            for index, (top, left) in enumerate(chunk):
                region = (..., slice(top, top + tile_h), slice(left, left + tile_w))
                total[region] += weight * merged[index * batch : (index + 1) * batch]
                weight_sum[region] += weight
        return total / weight_sum

    def predict(
        self, images: torch.Tensor, tile_size: int | None = None, overlap: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """images: (B, 3, H, W) 0-255 -> (pred (B, H, W) int64, confidence (B, H, W) float32).

        With ``tile_size`` the image is predicted by sliding window. The confidence is the largest
        class probability of the merged map.
        """
        tiled = tile_size is not None
        merged = self.merged_tiled(images, tile_size, overlap) if tiled else self.merged(images)
        return self.decide(merged)

    def decide(self, merged: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Merged maps (..., C, H, W) -> (pred (..., H, W) int64, confidence (..., H, W)): the
        class of the largest probability, and that probability."""
        probs = merged if self.merge == "probs" else merged.softmax(dim=-3)
        confidence, pred = probs.max(dim=-3)
        return pred, confidence


def _flip(tensor: torch.Tensor, flip: str) -> torch.Tensor:
    """Apply (or undo: flips are their own inverse) one flip to (B, C, H, W)."""
    dim = FLIPS[flip]
    return tensor if dim is None else tensor.flip(dim)
