"""The checkpoint record: what a checkpoint holds besides the weights, and reading and writing it.

Every checkpoint the training stages write carries, next to the weights, a plain-Python record under
``checkpoint["geoseg"]``: the model class and its constructor arguments (``net.init_args``, which
include the network's input contract), the class names, their palette and the ignore id.
``load_model`` needs nothing else. Files are read with ``weights_only=True`` (no pickled code runs)
and written atomically (a temporary file renamed over the old one).
"""

import inspect
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from geoseg.bands import RasterInput
from geoseg.classes import default_palette
from geoseg.errors import CheckpointError, WriteError, preview
from geoseg.files import remove_stale_temporaries, write_atomic
from geoseg.models.geoseg_format import from_published_layouts, is_geoseg_state
from geoseg.models.swin import SwinTransformer

log = logging.getLogger(__name__)

# Where the LightningModules keep the trained network: its keys in state_dict start with this.
NET_PREFIX = "net."
# The plain-Python model record written next to the weights.
CHECKPOINT_KEY = "geoseg"
# Version 3 names the network's architecture version (its layer layout, see
# ``EncoderDecoder.architecture_version``); earlier records hold architecture version 1, which
# this release refuses with that message.
RECORD_VERSION = 3

# class name -> class of every network a checkpoint can name (filled by ``register_model``)
MODEL_REGISTRY: dict[str, type[nn.Module]] = {}


def register_model(cls: type[nn.Module]) -> type[nn.Module]:
    """Class decorator: make ``cls`` rebuildable from checkpoints (it must set ``init_args``)."""
    MODEL_REGISTRY[cls.__name__] = cls
    return cls


def as_plain(value, key: str = "value"):
    """``value`` as plain JSON-able Python (tuples -> lists), as checkpoints store it; anything else
    is a TypeError naming ``key``."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [as_plain(v, key) for v in value]
    if isinstance(value, dict):
        return {str(k): as_plain(v, f"{key}.{k}") for k, v in value.items()}
    raise TypeError(
        f"{key} must be plain Python (int, float, str, bool, lists or dicts of them) so "
        f"checkpoints can rebuild the model; got {type(value).__name__}"
    )


def differing_arguments(built: dict, recorded: dict, skip: tuple[str, ...] = ()) -> list[str]:
    """The constructor arguments whose values differ between two ``init_args`` dicts."""
    return sorted(
        key
        for key in set(built) | set(recorded)
        if key not in skip and as_plain(built.get(key)) != as_plain(recorded.get(key))
    )


@dataclass(frozen=True)
class ModelSpec:
    """What a checkpoint records besides the weights; plain values only (``weights_only`` loads)."""

    model_class: str
    model_kwargs: dict
    classes: tuple[str, ...]
    ignore_index: int
    palette: tuple[tuple[int, int, int], ...] = field(default=())
    architecture_version: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def raster(self) -> RasterInput | None:
        """The bands the network reads and their scaling (None: 8-bit RGB)."""
        return RasterInput.of(self.model_kwargs.get("raster"))

    @property
    def normalization(self) -> dict | None:
        """The input normalisation the network applies (mean/std on the input's scale)."""
        return self.model_kwargs.get("normalization")

    def to_dict(self) -> dict:
        record = as_plain(asdict(self), "model record")
        record["version"] = RECORD_VERSION
        return record

    @classmethod
    def from_dict(cls, record: dict) -> "ModelSpec":
        version = int(record.get("version", 1))
        if version > RECORD_VERSION:
            raise CheckpointError(
                f"model record version {version} is newer than this code reads ({RECORD_VERSION}); "
                "update geoseg"
            )
        kwargs = dict(record["model_kwargs"])
        classes = tuple(record["classes"])
        palette = record.get("palette") or default_palette(len(classes))
        return cls(
            model_class=record["model_class"],
            model_kwargs=kwargs,
            classes=classes,
            ignore_index=int(record["ignore_index"]),
            palette=tuple(tuple(int(c) for c in colour) for colour in palette),
            architecture_version=int(record.get("architecture_version", 1)),
        )

    def check_classes(self, path) -> None:
        """One class name per output of the head and a colour per class, or a CheckpointError:
        otherwise maps would be named or painted wrongly."""
        head = self.model_kwargs.get("num_classes")
        if head is not None and int(head) != self.num_classes:
            raise CheckpointError(
                f"{path}: its record names {self.num_classes} classes but the network's head "
                f"predicts {head}; expected one class name per output"
            )
        if len(self.palette) < self.num_classes:
            raise CheckpointError(
                f"{path}: its palette has {len(self.palette)} colours for {self.num_classes} "
                "classes; expected at least one colour per class"
            )

    def check_architecture(self, path) -> type[nn.Module]:
        """The registered class of this record, which must build its architecture version."""
        cls = MODEL_REGISTRY.get(self.model_class)
        if cls is None:
            raise CheckpointError(
                f"{path}: unknown model class '{self.model_class}'; "
                f"known: {', '.join(MODEL_REGISTRY)}"
            )
        built = getattr(cls, "architecture_version", 1)
        if self.architecture_version != built:
            raise CheckpointError(
                f"{path}: holds a {self.model_class} of architecture version "
                f"{self.architecture_version}; this release builds version {built}"
                + (
                    " (the published network's layers; version 1 was this project's earlier "
                    "decoder and Swin). Retrain it, or load it with a release before the change"
                    if self.architecture_version == 1
                    else ""
                )
            )
        parameters = inspect.signature(cls).parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
        unknown = [name for name in self.model_kwargs if name not in parameters]
        if unknown and not takes_any:
            raise CheckpointError(
                f"{path}: its model record gives {self.model_class} arguments it does not take: "
                f"{', '.join(unknown)} (it takes {', '.join(parameters)}); the record was edited "
                "or written by another release"
            )
        return cls


def describe_model(net: nn.Module, classes, ignore_index: int, palette=None) -> ModelSpec:
    """The spec of ``net`` as the training stages store it in their checkpoints."""
    name = type(net).__name__
    if MODEL_REGISTRY.get(name) is not type(net) or not hasattr(net, "init_args"):
        raise CheckpointError(
            f"{name} cannot be rebuilt from a checkpoint: decorate it with "
            "geoseg.models.register_model and give it an `init_args` dict of its constructor "
            "arguments"
        )
    classes = tuple(classes)
    palette = tuple(palette) if palette is not None else default_palette(len(classes))
    version = getattr(type(net), "architecture_version", 1)
    return ModelSpec(name, dict(net.init_args), classes, int(ignore_index), palette, version)


# --- reading and writing -------------------------------------------------------------------------


def read_checkpoint(path: str | os.PathLike, mmap: bool = False) -> dict:
    """Load a checkpoint file with ``weights_only=True`` (no pickled code runs).

    ``mmap=True`` maps the tensors instead of reading them, for a cheap look at a large file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as error:  # torch raises several types for corrupt or unsafe files
        raise CheckpointError(
            f"{path}: not a readable weights-only checkpoint ({error})"
        ) from error


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


def extract_state_dict(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The network's weights from a Lightning checkpoint or a plain (possibly wrapped) state dict."""
    state = checkpoint
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state.get(key), dict):
            state = state[key]
            break
    if any(key.startswith(NET_PREFIX) for key in state):
        state = {k[len(NET_PREFIX) :]: v for k, v in state.items() if k.startswith(NET_PREFIX)}
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


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


# --- initialising a network from a file (weights only) -------------------------------------------


def weight_differences(
    own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]
) -> dict[str, list[str]]:
    """The keys of ``state`` that do not fit a network whose state dict is ``own``: ``missing``
    (in the network, not in ``state``), ``unexpected`` (the reverse) and ``mismatched`` (in both,
    another shape), each sorted."""
    return {
        "missing": sorted(set(own) - set(state)),
        "unexpected": sorted(set(state) - set(own)),
        "mismatched": sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape),
    }


def load_pretrained_weights(net: nn.Module, path: str | os.PathLike) -> dict[str, list[str]]:
    """Initialise ``net`` from the weights in ``path``, loading every key that fits.

    Returns and logs what did not load: ``missing`` (in the network, not in the file),
    ``unexpected`` (in the file, not in the network) and ``mismatched`` (shape differs). A file that
    shares no weight with the network is an error rather than a silent no-op, and so is a
    checkpoint of this project recorded as another model class. Another class count (a head of
    another shape) is reported: fine-tuning to new classes is legitimate. A file of backbone
    weights alone (a timm state dict, keys without ``backbone.``) is mapped onto ``net.backbone``.
    GeoSeg checkpoints and Swin files in the timm, original or mmsegmentation layout (GeoSeg's
    ``stseg_base.pth``) are read under this project's key names (``from_published_layouts``).
    """
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: holds a {type(checkpoint).__name__}, not a state dict")
    if isinstance(checkpoint.get(CHECKPOINT_KEY), dict):
        _check_same_architecture(net, ModelSpec.from_dict(checkpoint[CHECKPOINT_KEY]), path)
    swin = isinstance(getattr(net, "backbone", None), SwinTransformer)
    state, left_out = from_published_layouts(extract_state_dict(checkpoint), swin_backbone=swin)
    own = net.state_dict()
    state, backbone_only = _map_backbone_only(net, state, own)
    backbone_only = backbone_only or all(key.startswith("backbone.") for key in state)
    report = weight_differences(own, state)
    loadable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not loadable:
        raise CheckpointError(
            f"{path}: none of its {len(state)} weights match the network "
            f"({type(net).__name__}, {len(own)} weights); is it a checkpoint of this architecture?"
        )
    net.load_state_dict(loadable, strict=False)
    complete = not any(report.values())
    log.log(
        logging.INFO if complete else logging.WARNING,
        "initialised %s from %s%s: %d of %d weights loaded; %d missing, %d unexpected, "
        "%d shape-mismatched%s%s",
        type(net).__name__,
        path,
        " (backbone weights only, mapped onto net.backbone)" if backbone_only else "",
        len(loadable),
        len(own),
        len(report["missing"]),
        len(report["unexpected"]),
        len(report["mismatched"]),
        "".join(f"\n  {kind}: {preview(keys, limit=8)}" for kind, keys in report.items() if keys),
        f"\n  left out (derived buffers, heads of other networks): {preview(left_out, limit=8)}"
        if left_out
        else "",
    )
    return report


def _check_same_architecture(net: nn.Module, spec: ModelSpec, path) -> None:
    """A checkpoint of another model class is an error; other constructor arguments a warning."""
    name = type(net).__name__
    spec.check_architecture(path)
    if spec.model_class != name:
        raise CheckpointError(
            f"{path}: holds a {spec.model_class} but the config's net is a {name}; "
            "pretrained_ckpt_path initialises the same architecture (another class count is "
            "fine). To start from backbone weights alone, give a file of the backbone's state dict"
        )
    init_args = getattr(net, "init_args", None)
    if not isinstance(init_args, dict):
        return
    differing = differing_arguments(
        init_args, spec.model_kwargs, skip=("num_classes", "pretrained")
    )
    if differing:
        log.warning(
            "%s: recorded as %s with %s; the config's net has %s: weights of other shapes are not "
            "loaded",
            path,
            name,
            ", ".join(f"{key}={spec.model_kwargs.get(key)!r}" for key in differing),
            ", ".join(f"{key}={init_args.get(key)!r}" for key in differing),
        )
    if "num_classes" in init_args and spec.num_classes != init_args["num_classes"]:
        log.warning(
            "%s: trained for %d classes, the net has %d: its class head is not loaded "
            "(fine-tuning to new classes)",
            path,
            spec.num_classes,
            init_args["num_classes"],
        )


def _map_backbone_only(
    net: nn.Module, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], bool]:
    """Keys of a bare backbone state dict renamed to ``backbone.<key>`` when that fits better.

    timm's feature wrappers flatten ``layers.0`` to ``layers_0``; both spellings are tried.
    """
    direct = sum(key in own for key in state)
    if not isinstance(getattr(net, "backbone", None), nn.Module) or 2 * direct >= len(state):
        return state, False
    mapped = {}
    for key, value in state.items():
        candidates = (f"backbone.{key}", "backbone." + re.sub(r"^(\w+)\.(\d+)\.", r"\1_\2.", key))
        mapped[next((c for c in candidates if c in own), key)] = value
    if sum(key in own for key in mapped) <= direct:
        return state, False
    return mapped, True
