"""Choosing an ensemble's members and weights on the target's Val split: greedy forward selection
with replacement (Caruana et al. 2004, "Ensemble selection from libraries of models").

Every candidate predicts the Val tiles once (an ``EnsemblePredictor`` of its own, with the TTA
asked for); its merged map at the counted pixels (ground truth not ``ignore_index``) is kept in
memory. Round 1 takes the candidate with the best Val mIoU alone; every further round adds, with
replacement, the candidate whose addition gives the merged ensemble the best Val mIoU (ties: the
earlier candidate). After R rounds a candidate's weight is the number of rounds that added it / R,
which is what ``EnsemblePredictor(weights=...)`` and ``ensemble_inference.py --selection`` read.

The merged ensemble is the count-weighted mean of the members' maps (logits, or probabilities with
``merge="probs"``), as ``EnsemblePredictor`` merges them; mIoU is ``geoseg.metrics``'s, from one
confusion matrix over all Val pixels. Selection is done on the target's Val split, so the chosen
ensemble's Val mIoU is optimistic: report the Test split's.

It lives in ``geoseg.inference`` beside ``EnsemblePredictor``, whose merge it reproduces and whose
weights it chooses; ``geoseg.evaluation`` scores folders of written maps, and this writes none.
"""

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from geoseg.errors import ConfigError, DataError
from geoseg.files import write_text_atomic
from geoseg.inference.tta import EnsemblePredictor, check_weights
from geoseg.metrics import confusion_matrix, segmentation_scores

STORE_DTYPES = {"float32": torch.float32, "float16": torch.float16}


@dataclass(frozen=True)
class Selection:
    """The outcome of ``greedy_selection``: per candidate ``counts`` and ``weights`` (counts /
    rounds), ``added`` (the candidate each round added), ``round_mIoU`` (Val mIoU of the ensemble
    after each round), ``member_mIoU`` (each candidate alone) and ``equal_weight_mIoU`` (all
    candidates at equal weight, for comparison)."""

    counts: list[int]
    weights: list[float]
    added: list[int]
    round_mIoU: list[float]
    member_mIoU: list[float]
    equal_weight_mIoU: float


def member_outputs(
    predictor: EnsemblePredictor,
    dataset: Dataset,
    *,
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
) -> tuple[Tensor, Tensor]:
    """(outputs (P, C) ``dtype`` on the CPU: the predictor's merged map at the P counted pixels of
    ``dataset``, tile after tile; targets (P,) int64 class ids).

    ``dataset``: items ``{"img": (C, H, W), "gt_semantic_seg": (H, W)}`` (a ``TargetDataset``
    without transform) and an ``ignore_index``; each tile is predicted alone, at its own size.
    """
    ignore_index = dataset.ignore_index
    outputs, targets = [], []
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers)
    for item in loader:
        merged = predictor.merged(item["img"][None])[0]  # (C, H, W)
        mask = item["gt_semantic_seg"].flatten()
        counted = mask != ignore_index
        pixels = merged.flatten(1).T  # (H x W, C)
        outputs.append(pixels[counted.to(pixels.device)].to("cpu", dtype))
        targets.append(mask[counted])
    if not outputs:
        raise DataError("the validation set has no tile")
    return torch.cat(outputs), torch.cat(targets)


def greedy_selection(
    outputs: Sequence[Tensor], target: Tensor, class_names: Sequence[str], rounds: int = 10
) -> Selection:
    """Greedy forward selection with replacement over candidates' Val maps.

    outputs: one (P, C) map per candidate (logits or probabilities) at the P counted pixels;
    target: (P,) class ids. The ensemble of counts n_m is scored by the argmax of sum_m n_m x
    output_m, which is that of the weighted mean (up to float rounding).
    """
    if not outputs:
        raise ValueError("no candidate to select from")
    if rounds < 1:
        raise ValueError(f"rounds={rounds}: expected at least 1")
    shape = (target.numel(), len(class_names))
    for index, output in enumerate(outputs):
        if tuple(output.shape) != shape:
            raise ValueError(
                f"candidate {index}: map of shape {tuple(output.shape)}; expected {shape} "
                "(counted pixels, classes)"
            )

    def miou(merged: Tensor) -> float:
        cm = confusion_matrix(merged.argmax(dim=1), target, len(class_names))
        return segmentation_scores(cm, class_names)["mIoU"]

    member_mIoU = [miou(output) for output in outputs]
    total = torch.zeros(shape, dtype=torch.float32)
    counts = [0] * len(outputs)
    added, round_mIoU = [], []
    for _ in range(rounds):
        best, best_score = 0, -math.inf
        for index, output in enumerate(outputs):
            score = miou(total + output)
            if score > best_score:  # strictly better: ties keep the earlier candidate
                best, best_score = index, score
        total += outputs[best]
        counts[best] += 1
        added.append(best)
        round_mIoU.append(best_score)
    everyone = torch.zeros(shape, dtype=torch.float32)
    for output in outputs:
        everyone += output
    return Selection(
        counts=counts,
        weights=[count / rounds for count in counts],
        added=added,
        round_mIoU=round_mIoU,
        member_mIoU=member_mIoU,
        equal_weight_mIoU=miou(everyone),
    )


def select_ensemble(
    models: Sequence[nn.Module],
    dataset: Dataset,
    class_names: Sequence[str],
    *,
    rounds: int = 10,
    scales: Sequence[float] = (1.0,),
    flips: Sequence[str] = ("none",),
    merge: str = "logits",
    device: torch.device | str = "cpu",
    precision: str = "auto",
    dtype: torch.dtype = torch.float32,
    num_workers: int = 0,
) -> Selection:
    """Predict ``dataset`` (the target's Val split) with every model once, then select greedily.

    Memory: the maps are kept on the CPU, ``len(models) x C x P x (4 bytes for float32, 2 for
    float16)`` for P counted Val pixels, plus two float32 maps of ``C x P`` for the sums: 6 classes
    over 100 Val tiles of 1024 x 1024 take 2.5 GB per member in float32, 1.3 GB in float16. A
    model is on ``device`` only while it predicts.
    """
    outputs, target = [], None
    for model in models:
        predictor = EnsemblePredictor(
            [model], scales=scales, flips=flips, merge=merge, device=device, precision=precision
        )
        output, target = member_outputs(predictor, dataset, dtype=dtype, num_workers=num_workers)
        outputs.append(output)
        model.to("cpu")
    return greedy_selection(outputs, target, class_names, rounds)


def selection_record(selection: Selection, checkpoints: Sequence[str], settings: dict) -> dict:
    """The JSON record of ``selection`` over ``checkpoints`` (as given), with the ``settings`` it
    was made with (Val folder, TTA, merge, precision)."""
    names = [str(path) for path in checkpoints]
    return {
        **settings,
        "checkpoints": names,
        "weights": selection.weights,
        "counts": selection.counts,
        "member_val_mIoU": selection.member_mIoU,
        "rounds": [
            {"round": number, "added": names[index], "val_mIoU": score}
            for number, (index, score) in enumerate(
                zip(selection.added, selection.round_mIoU, strict=True), start=1
            )
        ],
        "val_mIoU": selection.round_mIoU[-1],
        "equal_weight_val_mIoU": selection.equal_weight_mIoU,
    }


def write_selection(path: str | os.PathLike, record: dict) -> None:
    """Write ``record`` as JSON to ``path`` through a temporary file of this process's own and a
    rename: readers see the previous file or the new one, never a partial one."""
    write_text_atomic(path, json.dumps(record, indent=2, allow_nan=False) + "\n")


def read_selection(path: str | os.PathLike) -> tuple[list[Path], list[float]]:
    """(checkpoints, weights) of a selection file, the members of weight 0 left out. Relative
    checkpoint paths are read from the current folder, as they were given to the selection."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: selection file not found; write it with select_ensemble.py")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DataError(f"{path}: not a readable JSON selection file ({error})") from error
    checkpoints = record.get("checkpoints") if isinstance(record, dict) else None
    weights = record.get("weights") if isinstance(record, dict) else None
    if not isinstance(checkpoints, list) or not isinstance(weights, list):
        raise ConfigError(
            f"{path}: expected a JSON object with lists 'checkpoints' and 'weights' (one weight "
            "per checkpoint), as select_ensemble.py writes"
        )
    if not checkpoints:
        raise ConfigError(f"{path}: no checkpoints; expected at least one member")
    if not all(isinstance(w, (int, float)) and not isinstance(w, bool) for w in weights):
        raise ConfigError(f"{path}: weights {weights}: expected numbers")
    try:
        check_weights(weights, len(checkpoints), f"{path}: weights {weights}")
    except ValueError as error:
        raise ConfigError(str(error)) from error
    kept = [(Path(c), w) for c, w in zip(checkpoints, weights, strict=True) if w > 0]
    return [c for c, _ in kept], [w for _, w in kept]
