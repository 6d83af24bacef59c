"""The command line of the class statistics: python -m geoseg.datasets.stats --root R --split S."""

import argparse
from pathlib import Path

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.cli import run_script
from geoseg.datasets.stats import STATISTICS_FILE, class_statistics, format_table
from geoseg.datasets.stats import __doc__ as stats_doc


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m geoseg.datasets.stats",
        description=stats_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, required=True, help="dataset root (target layout)")
    parser.add_argument(
        "--split", default="Train", help="split folder under --root (default Train)"
    )
    parser.add_argument(
        "--mask-dir", default="masks_png", help="mask folder inside the split (default masks_png)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON file to write (default <root>/<split>/{STATISTICS_FILE})",
    )
    parser.add_argument(
        "--classes",
        help="class names in id order, comma-separated (default: the six target classes, "
        + ",".join(CLASSES)
        + ")",
    )
    parser.add_argument(
        "--ignore-index",
        type=int,
        default=IGNORE_INDEX,
        help=f"mask id of unlabelled pixels (default {IGNORE_INDEX})",
    )
    args = parser.parse_args(argv)
    classes = tuple(args.classes.split(",")) if args.classes else CLASSES
    stats = class_statistics(
        args.root,
        args.split,
        classes=classes,
        ignore_index=args.ignore_index,
        mask_dir=args.mask_dir,
    )
    output = args.output or args.root / args.split / STATISTICS_FILE
    print(format_table(stats))
    stats.save(output)
    print(f"\nwrote {output}")
    print("weights in a config (from geoseg.datasets import ClassStatistics):")
    print(f'    ClassStatistics.load("{output}").weights("inverse_sqrt_frequency")')


if __name__ == "__main__":
    run_script(main)
