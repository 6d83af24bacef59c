"""Convert a GeoSeg FT-UNetFormer or UNetFormer checkpoint into a self-describing one.

    python -m geoseg.models.import_geoseg IN.ckpt OUT.ckpt --arch ft_unetformer --num-classes 6

The output loads wherever this project takes a checkpoint (``load_model``, ``teacher_ckpt_path``,
``pretrained_ckpt_path``, ``ensemble_inference.py --checkpoints``) and predicts as the model did
in GeoSeg: the record carries the class names and GeoSeg's input normalisation (ImageNet mean/std
on the 0-255 scale, albumentations' default ``Normalize``).
"""

from __future__ import annotations

import logging
import os

from geoseg.classes import CLASSES, IGNORE_INDEX, IMAGENET_NORMALIZATION
from geoseg.cli import ArgumentParser, run_script
from geoseg.errors import CheckpointError, ConfigError, preview
from geoseg.files import refuse_overwriting_input
from geoseg.models.checkpoint import save_model
from geoseg.models.geoseg_format import (
    from_published_layouts,
    geoseg_model_arguments,
    is_geoseg_state,
    is_swin_state,
)
from geoseg.models.pretrained import check_model_name
from geoseg.models.record import MODEL_REGISTRY
from geoseg.models.weight_files import extract_state_dict, read_checkpoint, weight_differences

__all__ = ["ARCHITECTURES", "import_geoseg_checkpoint", "main"]

log = logging.getLogger(__name__)

# GeoSeg's model names -> this project's classes
ARCHITECTURES = {"ft_unetformer": "FTUNetFormer", "unetformer": "UNetFormer"}


def import_geoseg_checkpoint(
    source: str | os.PathLike,
    output: str | os.PathLike,
    *,
    arch: str | None = None,
    classes: list[str] | None = None,
    num_classes: int | None = None,
    backbone: str = "resnet18",
    ignore_index: int = IGNORE_INDEX,
) -> None:
    """Write ``output``: the network of GeoSeg checkpoint ``source`` with its model record.

    ``arch`` (``ft_unetformer``/``unetformer``) and ``num_classes``, when given, are checked
    against the weights; ``classes`` defaults to this project's six when the head has six;
    ``backbone`` is the timm name of a UNetFormer's CNN (GeoSeg's default is a ResNet-18).
    ``output`` must not be ``source`` (a DataError): the original would be replaced.
    """
    refuse_overwriting_input(output, source)
    check_model_name(backbone)
    state = extract_state_dict(read_checkpoint(source))
    if not is_geoseg_state(state):
        raise CheckpointError(
            f"{source}: not a GeoSeg FT-UNetFormer/UNetFormer checkpoint (no net.decoder.b4.* or "
            "net.decoder.segmentation_head.* weights)"
        )
    state, left_out = from_published_layouts(state, swin_backbone=is_swin_state(state))
    try:
        model_class, kwargs = geoseg_model_arguments(state, backbone)
    except KeyError as error:
        raise CheckpointError(f"{source}: {error.args[0]}") from None
    if arch is not None and ARCHITECTURES.get(arch) != model_class:
        raise ConfigError(
            f"{source}: holds a {model_class}, not --arch {arch} "
            f"(choices: {', '.join(ARCHITECTURES)})"
        )
    head = kwargs["num_classes"]
    if num_classes is not None and num_classes != head:
        raise ConfigError(
            f"{source}: its head predicts {head} classes, not --num-classes {num_classes}"
        )
    if classes is None:
        if head != len(CLASSES):
            raise ConfigError(
                f"{source}: its head predicts {head} classes; name them with --classes "
                "(comma-separated, in the order of the GeoSeg config's CLASSES)"
            )
        classes = list(CLASSES)
        log.warning(
            "%s: recorded with this project's class names (%s); if the model learnt other "
            "classes (e.g. Vaihingen's or LoveDA's), convert again with --classes",
            source,
            ", ".join(classes),
        )
    if len(classes) != head:
        raise ConfigError(f"--classes names {len(classes)} classes; {source} predicts {head}")
    net = MODEL_REGISTRY[model_class](**kwargs, normalization=IMAGENET_NORMALIZATION)
    own = net.state_dict()
    differences = weight_differences(own, state)
    problems = {
        "not in GeoSeg's checkpoint": differences["missing"],
        "not mapped to this network": differences["unexpected"],
        "shape differs": differences["mismatched"],
    }
    if any(problems.values()):
        in_backbone = any(k.startswith("backbone.") for keys in problems.values() for k in keys)
        hint = (
            f"; is its CNN not {backbone!r}? give its timm name with --backbone"
            if in_backbone and model_class == "UNetFormer"
            else ""
        )
        raise CheckpointError(
            f"{source}: the weights do not fit {model_class}({kwargs}): "
            + "; ".join(
                f"{what}: {preview(keys, limit=6)}" for what, keys in problems.items() if keys
            )
            + hint
        )
    net.load_state_dict(state)
    save_model(net, output, classes=classes, ignore_index=ignore_index)
    log.info(
        "%s -> %s: %s, %d weights, classes %s; recomputed, not copied: %s",
        source,
        output,
        model_class,
        len(own),
        ", ".join(classes),
        preview(left_out, limit=4) if left_out else "nothing",
    )


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="python -m geoseg.models.import_geoseg",
        description="Convert a GeoSeg FT-UNetFormer/UNetFormer checkpoint (its Lightning .ckpt) "
        "into a checkpoint this pipeline loads anywhere: weights renamed, class names and "
        "GeoSeg's ImageNet input normalisation recorded.",
    )
    parser.add_argument(
        "source", help="GeoSeg checkpoint (state_dict keys net.backbone.*, net.decoder.*)"
    )
    parser.add_argument("output", help="checkpoint to write")
    parser.add_argument(
        "--arch",
        choices=sorted(ARCHITECTURES),
        help="check the network is this one (read from the weights otherwise)",
    )
    parser.add_argument("--num-classes", type=int, help="check the head predicts this many classes")
    parser.add_argument(
        "--classes",
        help=f"class names, comma-separated, in the model's order (default for 6 classes: {','.join(CLASSES)})",
    )
    parser.add_argument(
        "--backbone",
        default="resnet18",
        help="UNetFormer only: the timm name of its CNN (default resnet18; GeoSeg's swsl_resnet18 is a ResNet-18)",
    )
    parser.add_argument(
        "--ignore-index",
        type=int,
        default=IGNORE_INDEX,
        help=f"label id the masks use for 'no label' (default {IGNORE_INDEX}; GeoSeg configs use len(CLASSES))",
    )
    args = parser.parse_args(argv)
    import_geoseg_checkpoint(
        args.source,
        args.output,
        arch=args.arch,
        classes=[c.strip() for c in args.classes.split(",")] if args.classes else None,
        num_classes=args.num_classes,
        backbone=args.backbone,
        ignore_index=args.ignore_index,
    )


if __name__ == "__main__":
    run_script(main)
