"""This project's checkpoints: the weights with their model record; reading and writing them.

``save_model`` writes a network with its record (``geoseg.models.record``); ``load_model`` rebuilds
any registered network from such a file alone. Files are read with ``weights_only=True`` (no
pickled code runs, see ``weight_files``) and written atomically (a temporary file renamed over the
old one).
"""

import os
from pathlib import Path

import torch
from torch import nn

from geoseg.errors import CheckpointError, WriteError, preview
from geoseg.files import remove_stale_temporaries, write_atomic
from geoseg.models.geoseg_format import is_geoseg_state
from geoseg.models.record import CHECKPOINT_KEY, MODEL_REGISTRY, ModelSpec, describe_model
from geoseg.models.weight_files import NET_PREFIX, extract_state_dict, read_checkpoint


def save_checkpoint_atomic(checkpoint: dict, path: str | os.PathLike) -> None:
    """``torch.save`` through a temporary file that is flushed to disk and renamed over ``path``.

    A kill, crash or full disk during the write leaves the previous file at ``path`` intact. A
    failed write (a full disk, a quota, no permission) is a CheckpointError of one line naming
    ``path``, the system's reason and the free space there. The temporary a killed earlier write
    left (as large as a checkpoint) is deleted once this one is written; one that a running
    process is still writing is not.
    """
    try:
        write_atomic(
            path, lambda tmp: _torch_save(checkpoint, tmp), durable=True, what="the checkpoint"
        )
    except WriteError as error:
        raise CheckpointError(str(error)) from error
    remove_stale_temporaries(Path(path).parent, [Path(path).name])


class _RecordedWrites:
    """A file for ``torch.save`` that keeps the OSError of a failed write: torch reports one as
    a RuntimeError that names no reason ("file write failed", "unexpected pos")."""

    def __init__(self, file):
        self.file = file
        self.error: OSError | None = None

    def write(self, data) -> int:
        try:
            return self.file.write(data)
        except OSError as error:
            self.error = error
            raise

    def flush(self) -> None:
        try:
            self.file.flush()
        except OSError as error:
            self.error = error
            raise


def _torch_save(checkpoint: dict, path: Path) -> None:
    """``torch.save(checkpoint, path)``; a failed write is an OSError with the system's reason,
    whatever torch made of it; other failures stay as they are."""
    with open(path, "wb") as file:
        recorded = _RecordedWrites(file)
        try:
            torch.save(checkpoint, recorded)
        except RuntimeError as error:
            if recorded.error is None:
                raise
            failed = recorded.error
            raise OSError(failed.errno, failed.strerror, str(path)) from error


def read_model_spec(checkpoint: dict, path: str | os.PathLike) -> ModelSpec:
    """The ModelSpec recorded in ``checkpoint`` (read from ``path``), or a CheckpointError."""
    if CHECKPOINT_KEY not in checkpoint:
        hint = (
            "it looks like a GeoSeg checkpoint: convert it once with `python -m "
            f"geoseg.models.import_geoseg {path} OUT.ckpt` (see --help for class names)"
            if isinstance(checkpoint, dict) and is_geoseg_state(extract_state_dict(checkpoint))
            else "only checkpoints written by this project's training stages can be rebuilt "
            "without a config"
        )
        raise CheckpointError(f"{path}: no '{CHECKPOINT_KEY}' model record; {hint}")
    spec = ModelSpec.from_dict(checkpoint[CHECKPOINT_KEY])
    spec.check_architecture(path)
    spec.check_classes(path)
    return spec


def nonfinite_weights(state: dict[str, torch.Tensor]) -> list[str]:
    """The names of the floating-point tensors of ``state`` holding NaN or inf, in its order
    (integer tensors such as ``num_batches_tracked`` cannot)."""
    return [
        name
        for name, tensor in state.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]


def load_model_and_spec(
    path: str | os.PathLike, map_location: str | torch.device = "cpu"
) -> tuple[nn.Module, ModelSpec]:
    """Rebuild the network saved in ``path`` in eval mode, with the ModelSpec it was saved with.

    Weights holding NaN or inf are a CheckpointError naming them: such a network maps nothing.
    """
    checkpoint = read_checkpoint(path)
    spec = read_model_spec(checkpoint, path)
    state = extract_state_dict(checkpoint)
    broken = nonfinite_weights(state)
    if broken:
        raise CheckpointError(
            f"{path}: non-finite weights (NaN or inf) in {preview(broken, limit=5)}: the "
            "checkpoint is unusable; use an earlier one (e.g. the -best.ckpt) or retrain"
        )
    net = MODEL_REGISTRY[spec.model_class](**spec.model_kwargs)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"{path}: weights do not fit {spec.model_class}: {error}") from error
    return net.to(map_location).eval(), spec


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the network saved in ``path`` (any registered architecture) in eval mode.

    It takes images on their native scale (e.g. 0-255 RGB) and applies its own normalisation.
    """
    return load_model_and_spec(path, map_location)[0]


def save_model(
    net: nn.Module, path: str | os.PathLike, *, classes, ignore_index: int, palette=None
) -> None:
    """Write ``net`` as a minimal checkpoint that ``load_model`` rebuilds (weights + ModelSpec)."""
    spec = describe_model(net, classes, ignore_index, palette)
    state = {f"{NET_PREFIX}{key}": value for key, value in net.state_dict().items()}
    save_checkpoint_atomic({"state_dict": state, CHECKPOINT_KEY: spec.to_dict()}, path)
