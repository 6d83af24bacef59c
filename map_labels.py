"""Weak labels from OpenStreetMap (or any vector map data) burnt onto GeoTIFF scenes.

    python map_labels.py --scenes data/scenes --map-data data/region.osm.pbf \
        --tags config/map_tags.py --output-root data/map_labels

Reads every GeoTIFF in --scenes (any CRS) and the vector file --map-data (.osm.pbf, .osm,
GeoPackage, GeoJSON, Shapefile: whatever GDAL reads), classes its features with the tag table
--tags (a Python config: which tags give which class, priorities, line widths, attribution) and
writes under --output-root:

    labels/<stem>.tif        uint8 class ids on exactly the scene's grid, 255 = ignore
    Train/images_png/, Train/masks_png/   training tiles of the target layout (TargetDataset)
    summary.json             class and ignore shares, features used and skipped, tiles, attribution

Ignore (255) where no feature lies, within --boundary-ignore metres of a class boundary or of
unmapped area (default: 2 pixels of each scene), and in tiles labelled below
--min-labelled-share, which are left out. The output appears only once complete and replaces a
previous run's as a whole. The labels are a work produced from the map data: OpenStreetMap's
licence (ODbL) asks you to credit it; see docs/map-data.md.
"""

import argparse
from pathlib import Path

from geoseg.cli import ArgumentParser, at_least, number_from, run_script
from geoseg.maplabels import (
    LABELS_DIR,
    SUMMARY_FILE,
    TILE_FORMATS,
    MapLabelSettings,
    TileSettings,
    make_map_labels,
)


def parse_args() -> argparse.Namespace:
    defaults = TileSettings()
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=Path, required=True, help="a folder of GeoTIFF scenes")
    parser.add_argument(
        "--map-data", type=Path, required=True, help="a vector file: .osm.pbf, .gpkg, .geojson..."
    )
    parser.add_argument(
        "--tags", type=Path, default=Path("config/map_tags.py"), help="the tag-to-class table"
    )
    parser.add_argument("--output-root", type=Path, required=True, help="a new folder")
    parser.add_argument("--tile-size", type=at_least(1), default=defaults.tile_size)
    parser.add_argument(
        "--boundary-ignore",
        type=number_from(0),
        metavar="METRES",
        help="ignore band along class boundaries, in metres (default: 2 pixels of each scene; "
        "0: none)",
    )
    parser.add_argument(
        "--min-labelled-share",
        type=number_from(0, 1),
        default=defaults.min_labelled_share,
        help="tiles with fewer labelled (not ignore) pixels are left out",
    )
    parser.add_argument(
        "--tile-format",
        choices=TILE_FORMATS,
        default=defaults.tile_format,
        help="png: 8-bit RGB tiles; tif: GeoTIFF tiles with every band of the scene",
    )
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    settings = MapLabelSettings(
        scenes=args.scenes,
        map_data=args.map_data,
        tags=args.tags,
        output_root=args.output_root,
        tiles=TileSettings(args.tile_size, args.min_labelled_share, args.tile_format),
        boundary_ignore_m=args.boundary_ignore,
    )
    summary = make_map_labels(settings)
    shares = ", ".join(f"{name} {value:.1%}" for name, value in summary["class_share"].items())
    print(
        f"{len(summary['scenes'])} scenes, {summary['features']['used']} features used: {shares}, "
        f"ignore {summary['ignore']:.1%}; {summary['tiles_kept']} tiles kept, "
        f"{summary['tiles_left_out']} left out"
    )
    print(
        f"wrote {args.output_root / LABELS_DIR}, {args.output_root / 'Train'} and "
        f"{args.output_root / SUMMARY_FILE} ({summary['attribution']})"
    )


if __name__ == "__main__":
    run_script(main)
