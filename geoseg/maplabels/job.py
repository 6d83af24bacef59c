"""Weak labels from map data for a folder of scenes: the stage's one entry point.

Output (``<output-root>``)::

    labels/<stem>.tif                uint8 class ids on the scene's exact grid, 255 = ignore
    Train/images_png/<stem>_<top>_<left>.png|.tif   training tiles (TargetDataset's layout)
    Train/masks_png/<stem>_<top>_<left>.png|.tif
    summary.json                     shares, feature counts, tiles, attribution

The output is built in a temporary folder beside it and replaces the previous output only once
complete: an interrupted run leaves the previous output as it was, a re-run leaves no stale
tiles. Nothing in it depends on the time or the output's location, so two runs on the same
inputs write the same bytes.
"""

import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.datasets.io import scan_folder
from geoseg.errors import DataError, GeoSegError
from geoseg.files import (
    check_build_output,
    remove_stale_temporaries,
    replace_folder,
    temporary_name,
    write_error,
)
from geoseg.maplabels.boundary import band_footprint
from geoseg.maplabels.grid import SceneGrid
from geoseg.maplabels.label_raster import WINDOW_SIZE, LabelCounts, write_label_raster
from geoseg.maplabels.map_data import read_map_data
from geoseg.maplabels.scene_features import SceneFeatures
from geoseg.maplabels.tag_table import load_tag_table
from geoseg.maplabels.tiles import TileSettings, check_png_scene, write_tiles

log = logging.getLogger(__name__)

SUMMARY_FILE = "summary.json"
LABELS_DIR = "labels"
STAGE = "map_labels"  # summary.json's mark of an output this stage may replace
SCENE_EXTENSIONS = (".tif", ".tiff")
BAND_PIXELS = 2  # the ignore band's default width, in pixels of the scene
# Map data is read this far around the scenes: a line outside a scene reaches into it by half its
# width once buffered.
READ_MARGIN_M = 1000.0


@dataclass(frozen=True)
class MapLabelSettings:
    """What a run reads and writes. ``boundary_ignore_m``: the ignore band's width in metres
    (None: ``BAND_PIXELS`` pixels of each scene); ``window_size``: pixels a side burnt at once."""

    scenes: Path
    map_data: Path
    tags: Path
    output_root: Path
    tiles: TileSettings = field(default_factory=TileSettings)
    boundary_ignore_m: float | None = None
    window_size: int = WINDOW_SIZE


def find_scenes(folder: Path) -> list[Path]:
    """The GeoTIFF scenes directly inside ``folder``, by name; none is a DataError."""
    scenes = sorted(scan_folder(folder, SCENE_EXTENSIONS).files.values())
    if not scenes:
        raise DataError(f"{folder}: no GeoTIFF scenes ({', '.join(SCENE_EXTENSIONS)}) found")
    return scenes


def make_map_labels(settings: MapLabelSettings) -> dict:
    """Write the label rasters, tiles and summary of ``settings`` (see the module docstring);
    the summary. Bad input (tag table, scenes, map data, an output folder in the way) is a
    GeoSegError before anything is written."""
    table = load_tag_table(settings.tags)
    grids = [SceneGrid.of(path) for path in find_scenes(settings.scenes)]
    check_build_output(
        settings.output_root,
        {"the scenes folder": settings.scenes, "the map data": settings.map_data},
        _is_previous_run,
        f"map labels (no {SUMMARY_FILE} of this stage)",
    )
    if settings.tiles.tile_format == "png":
        for grid in grids:
            check_png_scene(grid.path)
    features = read_map_data(settings.map_data, table, grids, READ_MARGIN_M)
    reach_m = float(np.nanmax(features.widths, initial=0.0)) / 2  # of a buffered line
    near = [features.near(grid, grid.metres_to_pixels(reach_m) + 1) for grid in grids]
    missed = [grid.path.name for grid, indices in zip(grids, near, strict=True) if not len(indices)]
    if len(missed) == len(grids):
        raise DataError(
            f"{settings.map_data}: no feature of the tag table {settings.tags} lies on any scene "
            f"in {settings.scenes}; expected map data that covers them"
        )
    for name in missed:
        log.warning("%s: no map feature lies on this scene; it gets no labels", name)

    output = Path(os.path.realpath(settings.output_root))
    output.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(output.parent, [output.name])  # left by killed runs
    staging = temporary_name(output, folder=True)
    existed = output.exists()
    try:
        (staging / LABELS_DIR).mkdir()
        scenes, totals = {}, LabelCounts()
        for grid, indices in zip(grids, near, strict=True):
            if len(indices):
                scenes[grid.stem] = _label_scene(
                    grid, SceneFeatures.place(features, grid, indices), table.attribution,
                    settings, staging, totals,
                )  # fmt: skip
        summary = _summary(
            settings, table.attribution, features.counts.as_dict(), scenes, missed, totals
        )
        text = json.dumps(summary, indent=2, ensure_ascii=False) + "\n"
        (staging / SUMMARY_FILE).write_text(text, encoding="utf-8")
        replace_folder(output, staging)
    except BaseException as error:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, GeoSegError):
            raise write_error(output, error, "the map labels", existed) from error
        raise
    if summary["classes_never_mapped"]:
        log.warning(
            "the map data gives no pixel of %s: a model trained on these labels alone never "
            "learns them",
            ", ".join(summary["classes_never_mapped"]),
        )
    return summary


def _label_scene(
    grid: SceneGrid,
    features: SceneFeatures,
    attribution: str,
    settings: MapLabelSettings,
    staging: Path,
    totals: LabelCounts,
) -> dict:
    """Write one scene's label raster and tiles into ``staging``; its summary entry."""
    band_m = settings.boundary_ignore_m
    if band_m is None:
        band_m = BAND_PIXELS * max(grid.pixel.x, grid.pixel.y)
    labels = staging / LABELS_DIR / f"{grid.stem}.tif"
    counts = write_label_raster(
        labels, features, band_footprint(band_m, grid.pixel), attribution, settings.window_size
    )
    kept, left_out = write_tiles(grid, labels, staging, settings.tiles, attribution)
    totals.add(counts)
    log.info(
        "%s: %d features, %.1f%% labelled, %d tiles kept, %d left out",
        grid.path.name, len(features), 100 * (1 - _shares(counts)["ignore"]), kept, left_out,
    )  # fmt: skip
    return {
        "width": grid.width,
        "height": grid.height,
        "crs": grid.crs.to_string(),
        "features": len(features),
        "boundary_ignore_m": band_m,
        **_shares(counts),
        "tiles_kept": kept,
        "tiles_left_out": left_out,
    }


def _shares(counts: LabelCounts) -> dict:
    """Each class's share of the pixels, and the ignore share: no feature, or the boundary band."""
    pixels = max(counts.pixels, 1)
    ignored = int(counts.values[IGNORE_INDEX])
    return {
        "class_share": {
            name: round(int(counts.values[index]) / pixels, 6) for index, name in enumerate(CLASSES)
        },
        "ignore": round(ignored / pixels, 6),
        "ignore_unmapped": round(counts.unmapped / pixels, 6),
        "ignore_boundary": round((ignored - counts.unmapped) / pixels, 6),
    }


def _summary(
    settings: MapLabelSettings,
    attribution: str,
    features: dict,
    scenes: dict,
    missed: list[str],
    totals: LabelCounts,
) -> dict:
    tiles = settings.tiles
    return {
        "stage": STAGE,
        "attribution": attribution,
        "map_data": str(settings.map_data),
        "tag_table": str(settings.tags),
        "settings": {
            "tile_size": tiles.tile_size,
            "tile_format": tiles.tile_format,
            "min_labelled_share": tiles.min_labelled_share,
            "boundary_ignore_m": settings.boundary_ignore_m,
        },
        "pixels": totals.pixels,
        **_shares(totals),
        "classes_never_mapped": [
            name for index, name in enumerate(CLASSES) if not totals.values[index]
        ],
        "tiles_kept": sum(scene["tiles_kept"] for scene in scenes.values()),
        "tiles_left_out": sum(scene["tiles_left_out"] for scene in scenes.values()),
        "features": features,
        "scenes": scenes,
        "scenes_without_map_data": missed,
    }


def _is_previous_run(folder: Path) -> bool:
    """Whether ``folder`` holds an output of this stage (its summary says so)."""
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(summary, dict) and summary.get("stage") == STAGE
