"""The model record: what a checkpoint holds besides the weights, and the networks it can name.

Every checkpoint the training stages write carries, next to the weights, a plain-Python record under
``checkpoint["geoseg"]`` (``CHECKPOINT_KEY``): the model class and its constructor arguments
(``net.init_args``, which include the network's input contract), the class names, their palette
and the ignore id. ``ModelSpec`` is that record; ``MODEL_REGISTRY`` maps the class names it holds to
the classes (``register_model``). Reading and writing the files is ``checkpoint``'s.
"""

import inspect
import typing
from dataclasses import asdict, dataclass, field

from torch import nn

from geoseg.bands import RasterInput
from geoseg.classes import default_palette
from geoseg.errors import CheckpointError
from geoseg.models.common import as_plain

__all__ = [
    "CHECKPOINT_KEY",
    "MODEL_REGISTRY",
    "RECORD_VERSION",
    "ModelSpec",
    "describe_model",
    "differing_arguments",
    "register_model",
    "taken_arguments",
]

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
        taken = taken_arguments(cls)
        unknown = [name for name in self.model_kwargs if taken is not None and name not in taken]
        if unknown:
            raise CheckpointError(
                f"{path}: its model record gives {self.model_class} arguments it does not take: "
                f"{', '.join(unknown)} (it takes {', '.join(taken)}); the record was edited "
                "or written by another release"
            )
        return cls


def taken_arguments(cls: type) -> list[str] | None:
    """The keyword arguments ``cls(...)`` takes, or None where it takes any.

    Its named parameters and, for a ``**kwargs: Unpack[SomeTypedDict]`` (PEP 692: how the
    networks take the arguments they share, ``EncoderDecoderArguments``), the keys of that dict.
    """
    names = []
    for parameter in inspect.signature(cls).parameters.values():
        if parameter.kind is parameter.VAR_KEYWORD:
            # get_type_hints resolves annotations written as strings too
            unpacked = typing.get_args(typing.get_type_hints(cls.__init__).get(parameter.name))
            if len(unpacked) != 1 or not typing.is_typeddict(unpacked[0]):
                return None
            names += unpacked[0].__annotations__
        elif parameter.kind is not parameter.VAR_POSITIONAL:
            names.append(parameter.name)
    return names


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
