"""The command line of the class statistics: python -m geoseg.datasets.stats --root R --split S;
with --bands, of the band statistics instead."""

import argparse
from pathlib import Path

from geoseg.bands import RASTER_DTYPES, RasterInput
from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.cli import ArgumentParser, run_script
from geoseg.datasets.stats import (
    BAND_STATISTICS_FILE,
    STATISTICS_FILE,
    band_statistics,
    class_statistics,
    format_band_table,
    format_table,
)
from geoseg.datasets.stats import __doc__ as stats_doc
from geoseg.datasets.stats.bands import DEFAULT_PERCENTILES, check_percentiles
from geoseg.errors import ConfigError

# Options of one kind of statistics only; given with the other kind they would be ignored.
_CLASS_OPTIONS = {
    "classes": "--classes",
    "ignore_index": "--ignore-index",
    "mask_dir": "--mask-dir",
}
_BAND_OPTIONS = {
    "count": "--count",
    "dtype": "--dtype",
    "percentiles": "--percentiles",
    "img_dir": "--img-dir",
}
# How a config reads the file just written ({output}: its path), printed after it.
_CLASS_STATISTICS_USE = (
    "weights in a config (from geoseg.datasets import ClassStatistics):\n"
    '    ClassStatistics.load("{output}").weights("inverse_sqrt_frequency")'
)
_BAND_STATISTICS_USE = (
    "scaling and normalisation in a config (from geoseg.datasets import BandStatistics):\n"
    '    stats = BandStatistics.load("{output}")\n'
    "    net = FTUNetFormer(..., raster=stats.raster_input(), normalization=stats.normalization)"
)


def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(
        prog="python -m geoseg.datasets.stats",
        description=stats_doc,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--root", type=Path, required=True, help="dataset root (target layout)")
    parser.add_argument(
        "--split", default="Train", help="split folder under --root (default Train)"
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"JSON file to write (default <root>/<split>/{STATISTICS_FILE}, with --bands "
        f"<root>/<split>/{BAND_STATISTICS_FILE})",
    )
    classes = parser.add_argument_group("class statistics")
    classes.add_argument("--mask-dir", help="mask folder inside the split (default masks_png)")
    classes.add_argument(
        "--classes",
        help="class names in id order, comma-separated (default: the six target classes, "
        + ",".join(CLASSES)
        + ")",
    )
    classes.add_argument(
        "--ignore-index",
        type=int,
        help=f"mask id of unlabelled pixels (default {IGNORE_INDEX})",
    )
    bands = parser.add_argument_group("band statistics (the scaling and normalisation of a model)")
    bands.add_argument(
        "--bands",
        help="1-based bands to read, comma-separated, in the network's order (e.g. 1,2,3,4); "
        "computes band statistics instead of class statistics",
    )
    bands.add_argument(
        "--count", type=int, help="bands every image holds (default: the highest of --bands)"
    )
    bands.add_argument(
        "--dtype", choices=RASTER_DTYPES, help="the images' data type (default uint8)"
    )
    bands.add_argument(
        "--percentiles",
        help="low,high percentiles of the stretch (default "
        + ",".join(f"{p:g}" for p in DEFAULT_PERCENTILES)
        + ")",
    )
    bands.add_argument("--img-dir", help="image folder inside the split (default images_png)")
    args = parser.parse_args(argv)
    if args.bands is None:
        _refuse_options(parser, args, _BAND_OPTIONS, "apply to band statistics: add --bands")
        _class_statistics(args)
    else:
        _refuse_options(parser, args, _CLASS_OPTIONS, "apply to class statistics, not --bands")
        _band_statistics(parser, args)


def _refuse_options(parser, args, options: dict[str, str], why: str) -> None:
    given = [flag for name, flag in options.items() if getattr(args, name) is not None]
    if given:
        parser.error(f"{', '.join(given)} {why}")


def _class_statistics(args) -> None:
    classes = tuple(args.classes.split(",")) if args.classes else CLASSES
    stats = class_statistics(
        args.root,
        args.split,
        classes=classes,
        ignore_index=IGNORE_INDEX if args.ignore_index is None else args.ignore_index,
        mask_dir=args.mask_dir or "masks_png",
    )
    _save_and_show(args, stats, format_table(stats), STATISTICS_FILE, _CLASS_STATISTICS_USE)


def _band_statistics(parser, args) -> None:
    try:
        band_numbers = tuple(int(b) for b in args.bands.split(","))
    except ValueError:
        parser.error(f"--bands {args.bands!r}: expected 1-based band numbers such as 1,2,3,4")
    percentiles = DEFAULT_PERCENTILES
    if args.percentiles is not None:
        try:
            percentiles = check_percentiles(args.percentiles.split(","))
        except ConfigError:
            parser.error(
                f"--percentiles {args.percentiles!r}: expected low,high with "
                "0 <= low < high <= 100, such as 2,98"
            )
    try:
        raster = RasterInput(band_numbers, args.count, args.dtype or "uint8")
    except ConfigError as error:
        parser.error(f"--bands {args.bands!r}, --count {args.count}: {error}")
    stats = band_statistics(
        args.root,
        args.split,
        raster=raster,
        percentiles=percentiles,
        img_dir=args.img_dir or "images_png",
    )
    _save_and_show(
        args, stats, format_band_table(stats), BAND_STATISTICS_FILE, _BAND_STATISTICS_USE
    )


def _save_and_show(args, stats, table: str, file_name: str, use: str) -> None:
    """Print ``table``, write ``stats`` to --output (default: ``file_name`` in the split's folder)
    and print ``use`` for that path."""
    output = args.output or args.root / args.split / file_name
    print(table)
    stats.save(output)
    print(f"\nwrote {output}")
    print(use.format(output=output))


if __name__ == "__main__":
    run_script(main)
