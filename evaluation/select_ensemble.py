"""Choose ensemble members and weights on the target's Val split (greedy selection with replacement).

    python evaluation/select_ensemble.py --val-dir data/biodiversity/Val \
        --checkpoints model_weights/biodiversity/student_target_only/last.ckpt \
            model_weights/biodiversity/student_ft_target_kd/last.ckpt \
            model_weights/biodiversity/segformer_ft_target_kd/last.ckpt \
        --rounds 10 --output outputs/selection.json

Every checkpoint predicts the Val tiles (<val-dir>/images_png, masks_png) once, with the TTA of
--scales and --flips; then each of --rounds rounds adds, with replacement, the member that gives the
merged ensemble the best Val mIoU (Caruana et al. 2004; ties: the earlier checkpoint). Prints and
writes to --output: the checkpoints, their weights (rounds that added them / rounds), the Val mIoU
after each round, of each member alone and of the equal-weight ensemble.
``ensemble_inference.py --selection <output>`` predicts with the chosen weights. The chosen
ensemble's Val mIoU is optimistic (Val chose it): compare ensembles on Test.
"""

import argparse
from pathlib import Path

from geoseg.cli import ArgumentParser, at_least, run_script
from geoseg.datasets import TargetDataset
from geoseg.errors import ConfigError
from geoseg.files import check_output_file
from geoseg.hardware import resolve_device
from geoseg.inference import (
    STORE_DTYPES,
    autocast_dtype,
    check_same_bands,
    check_same_classes,
    select_ensemble,
    selection_record,
    write_selection,
)
from geoseg.inference.cli import add_tta_arguments, check_tta_arguments
from geoseg.models import load_model_and_spec


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True, help="candidates")
    parser.add_argument(
        "--val-dir", type=Path, required=True, help="<root>/Val with images_png and masks_png"
    )
    parser.add_argument(
        "--rounds", type=at_least(1), default=10, help="members added, with replacement"
    )
    parser.add_argument("--output", type=Path, required=True, help="the selection JSON to write")
    add_tta_arguments(parser, scales="1.0", flips="none")
    parser.add_argument(
        "--store-dtype",
        choices=tuple(STORE_DTYPES),
        default="float32",
        help="how the members' Val maps are kept in memory (float16 halves it)",
    )
    args = parser.parse_args()
    check_tta_arguments(args)
    return args


def main() -> None:
    args = parse_args()
    check_output_file(args.output, "--output")
    try:
        device = resolve_device(args.device)
    except ValueError as error:
        raise ConfigError(f"--{error}") from error
    models, specs = zip(*(load_model_and_spec(path) for path in args.checkpoints), strict=True)
    names = [str(path) for path in args.checkpoints]
    classes = check_same_classes(specs, names)
    val = TargetDataset(
        args.val_dir.parent,
        args.val_dir.name,
        num_classes=len(classes),
        ignore_index=specs[0].ignore_index,
        raster=check_same_bands(specs, names),
    )
    print(
        f"{len(models)} candidates x {len(args.scales)} scales x {len(args.flips)} flips on "
        f"{len(val)} Val tiles, {args.rounds} rounds, on {device}"
    )
    selection = select_ensemble(
        models,
        val,
        classes,
        rounds=args.rounds,
        scales=args.scales,
        flips=args.flips,
        merge=args.merge,
        device=device,
        precision=args.precision,
        dtype=STORE_DTYPES[args.store_dtype],
        num_workers=args.num_workers,
    )
    settings = {
        "val_dir": str(args.val_dir),
        "scales": list(args.scales),
        "flips": list(args.flips),
        "merge": args.merge,
        "precision": "fp32" if autocast_dtype(device, args.precision) is None else "bf16",
    }
    write_selection(args.output, selection_record(selection, names, settings))
    for number, (index, score) in enumerate(
        zip(selection.added, selection.round_mIoU, strict=True), start=1
    ):
        print(f"round {number:>3}: + {names[index]}  Val mIoU {100 * score:.2f}")
    for name, weight, score in zip(names, selection.weights, selection.member_mIoU, strict=True):
        print(f"weight {weight:.3f}  {name}  (alone: Val mIoU {100 * score:.2f})")
    print(f"equal-weight ensemble: Val mIoU {100 * selection.equal_weight_mIoU:.2f}")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    run_script(main)
