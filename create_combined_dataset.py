"""Combine the target data with OpenEarthMap for step 1 pretraining.

    python create_combined_dataset.py --target-root data/biodiversity \
        --oem-root data/OpenEarthMap --output-root data/biodiversity_combined

Reads the OpenEarthMap release as published (region folders of .tif images and labels, train.txt
and val.txt), remaps its labels to the target classes (geoseg/classes.py: OEM_TO_TARGET,
or --remap) and writes the combined layout: target Train tiles as links ``target_*``, OpenEarthMap
tiles as ``oem_*.png``, Val from the OpenEarthMap val list. The sources are only read; a re-run
replaces the previous build as a whole; --dry-run only prints the plan.

--remap takes one entry per OpenEarthMap id 0..8: a target id, 255 (ignore) or a set of target ids
written a|b ("one of these", trained with the partial-label loss; ignore in Val), e.g.
rangeland -> forest or grassland and bareland -> ignore:

    python create_combined_dataset.py --remap '255,255,1|2,4,4,1,5,3,4' ...
"""

import argparse
import os
from pathlib import Path

from geoseg.classes import IGNORE_INDEX, NUM_CLASSES, OEM_TO_TARGET
from geoseg.cli import run_script
from geoseg.datasets.combine import (
    CombineSettings,
    build_combined_dataset,
    describe_plan,
    describe_summary,
    plan_combined_dataset,
)
from geoseg.datasets.openearthmap import check_remap, parse_remap
from geoseg.errors import DataError


def remap_argument(text: str) -> tuple:
    """--remap's value: parsed and checked against the class scheme (a one-line usage error)."""
    try:
        return check_remap(parse_remap(text), NUM_CLASSES, IGNORE_INDEX)
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def parse_args() -> argparse.Namespace:
    defaults = CombineSettings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-root", type=Path, default=defaults.target_root)
    parser.add_argument("--oem-root", type=Path, default=defaults.oem_root)
    parser.add_argument("--output-root", type=Path, default=defaults.output_root)
    parser.add_argument("--num-oem-train", type=int, default=defaults.num_oem_train)
    parser.add_argument("--num-oem-val", type=int, default=defaults.num_oem_val)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="for the tile selection")
    parser.add_argument(
        "--oem-scale",
        type=float,
        default=defaults.oem_scale,
        help="resize OpenEarthMap tiles by this factor (bilinear image, nearest mask) to match the "
        "target's pixel size, e.g. 0.5 for 0.25 m OpenEarthMap onto 0.5 m target tiles",
    )
    parser.add_argument(
        "--remap",
        type=remap_argument,
        default=OEM_TO_TARGET,
        help="target id for each OpenEarthMap id 0..8, comma-separated: a class id, "
        f"{IGNORE_INDEX} (ignore) or a set of class ids a|b (one of these), e.g. "
        f"255,255,1|2,4,4,1,5,3,4 (default {','.join(map(str, OEM_TO_TARGET))})",
    )
    parser.add_argument("--workers", type=int, default=min(8, os.cpu_count() or 1))
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = CombineSettings(
        target_root=args.target_root,
        oem_root=args.oem_root,
        output_root=args.output_root,
        num_oem_train=args.num_oem_train,
        num_oem_val=args.num_oem_val,
        seed=args.seed,
        oem_scale=args.oem_scale,
        remap=args.remap,
    )
    plan = plan_combined_dataset(settings)
    print(describe_plan(plan))
    if args.dry_run:
        print("dry run: nothing written")
        return
    summary = build_combined_dataset(plan, workers=args.workers)
    print(describe_summary(summary, plan.label_sets))


if __name__ == "__main__":
    run_script(main)
