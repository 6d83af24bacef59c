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

After the build, a pre-flight compares the two sides (class shares, classes one side lacks, ground
sampling distances, band statistics), prints WARNING lines where they differ and saves
<output-root>/preflight.json (geoseg/datasets/preflight.py; on its own:
python -m geoseg.datasets.preflight --combined-root ...). --oem-scale auto resizes OpenEarthMap
to the target's ground sampling distance, read from the rasters or given with --target-gsd.
"""

import argparse
import os
from pathlib import Path

from geoseg.classes import IGNORE_INDEX, NUM_CLASSES, OEM_TO_TARGET
from geoseg.cli import ArgumentParser, at_least, run_script
from geoseg.datasets.combine import (
    CombineSettings,
    build_combined_dataset,
    describe_plan,
    describe_summary,
    plan_combined_dataset,
)
from geoseg.datasets.openearthmap import check_remap, parse_remap
from geoseg.datasets.preflight import (
    PREFLIGHT_FILE,
    GSDUnknownError,
    auto_oem_scale,
    run_preflight,
)
from geoseg.errors import DataError

# How to give what --oem-scale auto could not read from the rasters.
GSD_HINTS = {
    "target": "give it in metres with --target-gsd",
    "oem": "give the scale as a number with --oem-scale",
}


def remap_argument(text: str) -> tuple:
    """--remap's value: parsed and checked against the class scheme (a one-line usage error)."""
    try:
        return check_remap(parse_remap(text), NUM_CLASSES, IGNORE_INDEX)
    except DataError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def oem_scale(text: str) -> float | str:
    """--oem-scale: a positive factor, or "auto"."""
    if text == "auto":
        return text
    try:
        return positive(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive factor or auto") from None


def positive(text: str) -> float:
    """A positive number (NaN, zero and negative values refused)."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number")
    return value


def parse_args() -> argparse.Namespace:
    defaults = CombineSettings()
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target-root", type=Path, default=defaults.target_root)
    parser.add_argument("--oem-root", type=Path, default=defaults.oem_root)
    parser.add_argument("--output-root", type=Path, default=defaults.output_root)
    parser.add_argument("--num-oem-train", type=at_least(0), default=defaults.num_oem_train)
    parser.add_argument("--num-oem-val", type=at_least(0), default=defaults.num_oem_val)
    parser.add_argument("--seed", type=int, default=defaults.seed, help="for the tile selection")
    parser.add_argument(
        "--oem-scale",
        type=oem_scale,
        default=defaults.oem_scale,
        help="resize OpenEarthMap tiles by this factor (bilinear image, nearest mask) to match the "
        "target's pixel size, e.g. 0.5 for 0.25 m OpenEarthMap onto 0.5 m target tiles; auto: "
        "OpenEarthMap GSD / target GSD, read from the rasters (the target's from --target-gsd "
        "where its tiles are PNG)",
    )
    parser.add_argument(
        "--target-gsd",
        type=positive,
        help="the target's ground sampling distance in metres (PNG tiles carry none): for "
        "--oem-scale auto and the pre-flight; recorded in the manifest",
    )
    parser.add_argument(
        "--remap",
        type=remap_argument,
        default=OEM_TO_TARGET,
        help="target id for each OpenEarthMap id 0..8, comma-separated: a class id, "
        f"{IGNORE_INDEX} (ignore) or a set of class ids a|b (one of these), e.g. "
        f"255,255,1|2,4,4,1,5,3,4 (default {','.join(map(str, OEM_TO_TARGET))})",
    )
    parser.add_argument("--workers", type=at_least(1), default=min(8, os.cpu_count() or 1))
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    scale, reason = args.oem_scale, "as given"
    if scale == "auto":
        try:
            scale, reason = auto_oem_scale(args.target_root, args.oem_root, args.target_gsd)
        except GSDUnknownError as error:
            raise DataError(f"--oem-scale auto: {error}; {GSD_HINTS[error.domain]}") from error
    settings = CombineSettings(
        target_root=args.target_root,
        oem_root=args.oem_root,
        output_root=args.output_root,
        num_oem_train=args.num_oem_train,
        num_oem_val=args.num_oem_val,
        seed=args.seed,
        oem_scale=scale,
        oem_scale_reason=reason,
        remap=args.remap,
        target_gsd=args.target_gsd,
    )
    plan = plan_combined_dataset(settings)
    print(describe_plan(plan))
    if args.dry_run:
        print("dry run: nothing written")
        return
    summary = build_combined_dataset(plan, workers=args.workers)
    print(describe_summary(summary, plan.label_sets))
    report = run_preflight(settings.output_root, progress=True)
    print(report.text())
    report.save(settings.output_root / PREFLIGHT_FILE)
    print(f"wrote {settings.output_root / PREFLIGHT_FILE}")


if __name__ == "__main__":
    run_script(main)
