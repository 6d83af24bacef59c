"""Weak labels from map data (geoseg.maplabels, map_labels.py): exact pixels of small hand-made
vector files on a 2 m grid (priorities, line widths, the ignore band, reprojection, windows),
tiles, the summary, errors, and the real OpenStreetMap extracts."""

import json
import logging
from pathlib import Path

import numpy as np
import pyogrio
import pytest
import rasterio
import rasterio.warp
import shapely
from pyogrio.raw import write
from rasterio.transform import from_origin

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.datasets import TargetDataset
from geoseg.datasets.io import read_image, read_mask
from geoseg.errors import ConfigError, DataError, WriteError
from geoseg.maplabels import (
    ATTRIBUTION_TAG,
    MapLabelSettings,
    TileSettings,
    load_tag_table,
    make_map_labels,
)
from geoseg.maplabels.osm_tags import parse_lanes, parse_metres, parse_other_tags

from conftest import REALDATA, REPO_ROOT, file_digest, run_python, write_geotiff

OTHER, FOREST, GRASSLAND, CROPLAND, SETTLEMENT, WATER = range(6)
DEFAULT_TABLE = REPO_ROOT / "config" / "map_tags.py"
# The default table's tiers with roads as "other", so that a road differs from the buildings on
# it and the settlement around.
TEST_TABLE = """
attribution = "test map data"
tiers = ("buildings", "roads", "water", "land use", "land cover")
rules = [
    ("buildings", "building", "*", "settlement"),
    ("roads", "highway", "*", "other"),
    ("water", "natural", "water", "water"),
    ("land use", "landuse", "farmland", "cropland"),
    ("land use", "landuse", "meadow", "grassland"),
    ("land cover", "natural", "wood", "forest"),
]
lane_width = 3.5
line_widths = {"highway=*": 5}
"""

# The test grid: UTM 31N, 2 m pixels, its top-left corner here.
CRS, PIXEL, WEST, NORTH = "EPSG:32631", 2.0, 500000.0, 4000100.0


def x_at(column: float) -> float:
    """The easting of a column edge (column + 0.5: its centre)."""
    return WEST + column * PIXEL


def y_at(row: float) -> float:
    return NORTH - row * PIXEL


def cells(left: int, top: int, right: int, bottom: int) -> shapely.Polygon:
    """A box covering exactly the pixels of columns left..right-1 and rows top..bottom-1."""
    return shapely.box(x_at(left), y_at(bottom), x_at(right), y_at(top))


def vertical(column: float, **tags) -> tuple:
    """A line running north-south through the whole test grid at ``column``, with ``tags``."""
    return shapely.LineString([(x_at(column), y_at(-10)), (x_at(column), y_at(200))]), tags


def write_scene(folder: Path, width: int, height: int, name: str = "scene", bands=None) -> Path:
    """A GeoTIFF scene on the test grid (zeros unless ``bands``)."""
    if bands is None:
        bands = np.zeros((3, height, width), np.uint8)
    transform = from_origin(WEST, NORTH, PIXEL, PIXEL)
    return write_geotiff(folder / f"{name}.tif", bands, crs=CRS, transform=transform)


def write_map(path: Path, features: list[tuple], crs: str | None = CRS) -> Path:
    """``features`` (geometry, tags) as a one-layer vector file (the driver by the suffix)."""
    keys = sorted({key for _, tags in features for key in tags})
    write(
        path,
        np.array([shapely.to_wkb(geometry) for geometry, _ in features], dtype=object),
        [np.array([tags.get(key) for _, tags in features], dtype=object) for key in keys],
        fields=keys,
        crs=crs,
        geometry_type="Unknown" if path.suffix == ".gpkg" else "Polygon",
        driver="GPKG" if path.suffix == ".gpkg" else "ESRI Shapefile",
    )
    return path


def write_table(path: Path, text: str = TEST_TABLE) -> Path:
    path.write_text(text)
    return path


def settings(root: Path, table: Path = DEFAULT_TABLE, **options) -> MapLabelSettings:
    """The settings of a run on ``root``/scenes and ``root``/map.gpkg into ``root``/out."""
    return MapLabelSettings(root / "scenes", root / "map.gpkg", table, root / "out", **options)


def burn(tmp_path, features, width, height, table=DEFAULT_TABLE, band=0.0, **options):
    """The label raster of one test-grid scene and ``features``, and the summary."""
    write_scene(tmp_path / "scenes", width, height)
    write_map(tmp_path / "map.gpkg", features)
    summary = make_map_labels(
        settings(tmp_path, table, boundary_ignore_m=band, **options)
    )  # fmt: skip
    with rasterio.open(tmp_path / "out" / "labels" / "scene.tif") as labels:
        return labels.read(1), summary


def runs(counts: list[tuple[int, int]]) -> list[int]:
    """[(value, how many), ...] as a row of values."""
    return [value for value, count in counts for _ in range(count)]


# --- tag values ----------------------------------------------------------------------------------


def test_other_tags_are_parsed_with_their_escapes():
    text = '"width"=>"10","name"=>"Main \\"Street\\"","note"=>"a\\\\b","lanes"=>"2"'
    assert parse_other_tags(text) == {
        "width": "10",
        "name": 'Main "Street"',
        "note": "a\\b",
        "lanes": "2",
    }
    assert parse_other_tags(None) == {} and parse_other_tags("") == {}


@pytest.mark.parametrize(
    "text, metres",
    [("10", 10.0), ("10 m", 10.0), ("10m", 10.0), ("10.5", 10.5), (" 3 ", 3.0), ("wide", None),
     ("10 ft", None), ("3'6\"", None), ("0", None), ("", None), ("-2", None)],
)  # fmt: skip
def test_width_values(text, metres):
    assert parse_metres(text) == metres


def test_lane_values():
    assert [parse_lanes(text) for text in ("2", " 4", "0", "2;3", "1.5", "")] == [
        2, 4, None, None, None, None,
    ]  # fmt: skip


# --- the tag table -------------------------------------------------------------------------------


def test_the_default_table_reads_as_documented():
    table = load_tag_table(DEFAULT_TABLE)
    assert table.attribution == "© OpenStreetMap contributors, ODbL"
    assert table.tiers == ("buildings", "roads", "water", "land use", "land cover")
    assert table.rule_for({"building": "yes", "landuse": "residential"}).tier == 0
    assert table.rule_for({"building": "no"}) is None
    assert CLASSES[table.rule_for({"landuse": "reservoir"}).class_id] == "water"
    assert CLASSES[table.rule_for({"natural": "heath"}).class_id] == "grassland"
    assert CLASSES[table.rule_for({"landuse": "vineyard"}).class_id] == "cropland"
    assert CLASSES[table.rule_for({"landuse": "quarry"}).class_id] == "other"
    assert table.default_width("highway", "motorway") == 25
    assert table.default_width("highway", "unclassified") == 5  # highway=*
    assert table.default_width("waterway", "river") == 15 and table.lane_width == 3.5


@pytest.mark.parametrize(
    "edit, message",
    [
        (('"forest", "forest")', '"forest", "forrest")'),
         "rules[7] ('land use', 'landuse', 'forest', 'forrest'): class 'forrest' is not a class; "
         "expected one of other, forest, grassland, cropland, settlement, water"),
        (('("land use", "landuse", "forest"', '("landuse", "landuse", "forest"'),
         "tier 'landuse' is not one of tiers: buildings, roads, water, land use, land cover"),
        (('"highway=motorway": 25', '"motorway": 25'),
         "line_widths key 'motorway': expected 'key=value' or 'key=*'"),
        (('"highway=motorway": 25', '"highway=motorway": -25'),
         "line_widths['highway=motorway'] = -25: expected a positive width in metres"),
        (("lane_width = 3.5", "lane_widht = 3.5"), "unknown name 'lane_widht'; did you mean lane_width?"),
        (("attribution = ", "# attribution = "), "missing required names: attribution"),
    ],
)  # fmt: skip
def test_a_bad_table_is_one_error_naming_the_entry(tmp_path, edit, message):
    text = DEFAULT_TABLE.read_text()
    assert edit[0] in text
    table = write_table(tmp_path / "tags.py", text.replace(edit[0], edit[1], 1))
    with pytest.raises(ConfigError) as error:
        load_tag_table(table)
    assert str(error.value).startswith(f"{table}: ") and message in str(error.value)
    assert "\n" not in str(error.value)


# --- pixels --------------------------------------------------------------------------------------


def test_buildings_over_roads_over_water_over_land_use_over_land_cover(tmp_path):
    table = write_table(tmp_path / "tags.py")
    road_row = 20.5  # the centre of row 20; 6 m wide: rows 19, 20, 21
    features = [
        (cells(0, 0, 50, 50), {"natural": "wood"}),
        (shapely.LineString([(x_at(-5), y_at(road_row)), (x_at(60), y_at(road_row))]),
         {"highway": "residential", "width": "6"}),
        (cells(10, 18, 14, 23), {"building": "yes"}),
        # within a tier the smaller wins, whatever the order in the file: meadow on farmland
        (cells(5, 35, 10, 40), {"landuse": "meadow"}),
        (cells(0, 30, 20, 50), {"landuse": "farmland"}),
        # a higher tier wins whatever its size: the pond over the meadow inside it
        (cells(32, 32, 35, 35), {"landuse": "meadow"}),
        (cells(30, 30, 40, 40), {"natural": "water"}),
    ]  # fmt: skip
    labels, _ = burn(tmp_path, features, 50, 50, table)
    expected = np.full((50, 50), FOREST, np.uint8)
    expected[19:22] = OTHER
    expected[18:23, 10:14] = SETTLEMENT
    expected[30:50, 0:20] = CROPLAND
    expected[35:40, 5:10] = GRASSLAND
    expected[30:40, 30:40] = WATER
    np.testing.assert_array_equal(labels, expected)


def test_lines_are_buffered_by_their_width_lanes_or_default(tmp_path):
    features = [
        vertical(10.5, highway="residential", width="10 m"),  # 10 m: 5 pixels across
        vertical(25.5, highway="residential", lanes="2"),  # 2 x 3.5 m: centres within 3.5 m
        vertical(40, highway="primary"),  # the table's 12 m, on a pixel edge: 6 pixels
        vertical(55.5, highway="footway", width="wide"),  # falls back to 2 m: 1 pixel
        vertical(70, railway="rail", width="3'"),  # falls back to 4 m, on an edge: 2 pixels
    ]
    labels, summary = burn(tmp_path, features, 80, 20)
    row = [IGNORE_INDEX] * 80
    for first, last in ((8, 12), (24, 26), (37, 42), (55, 55), (69, 70)):
        row[first : last + 1] = [SETTLEMENT] * (last + 1 - first)
    assert labels[10].tolist() == row
    assert (labels == labels[10]).all()  # every row alike: the ends lie beyond the scene
    assert summary["features"]["line_widths"] == {
        "bad width tag (fell back)": 2,
        "default of the tag": 3,
        "lanes x lane width": 1,
        "width tag": 1,
    }


def test_the_ignore_band_runs_along_class_boundaries_and_unmapped_area(tmp_path):
    features = [
        (cells(0, 0, 20, 10), {"natural": "wood"}),
        (cells(20, 0, 40, 10), {"landuse": "meadow"}),
    ]
    # default: 2 pixels of the scene on each side of an edge; the scene's border is no edge
    labels, summary = burn(tmp_path, features, 60, 10, band=None)
    row = runs([(FOREST, 18), (IGNORE_INDEX, 4), (GRASSLAND, 16), (IGNORE_INDEX, 22)])
    assert (labels == row).all()
    assert summary["scenes"]["scene"]["boundary_ignore_m"] == 4.0
    # unmapped (columns 40..59) is ignore, never "other"; the band is the rest of the ignore
    assert summary["ignore_unmapped"] == pytest.approx(20 / 60, abs=1e-6)
    assert summary["ignore_boundary"] == pytest.approx(6 / 60, abs=1e-6)
    assert summary["class_share"]["other"] == 0
    # 2 m: one pixel each side
    labels, _ = burn(tmp_path / "narrow", features, 60, 10, band=2.0)
    assert (
        labels == runs([(FOREST, 19), (IGNORE_INDEX, 2), (GRASSLAND, 18), (IGNORE_INDEX, 21)])
    ).all()


def test_the_band_reaches_diagonal_neighbours_by_distance(tmp_path):
    features = [
        (cells(0, 0, 9, 9), {"natural": "wood"}),
        (cells(4, 4, 5, 5), {"landuse": "meadow"}),
    ]
    labels, _ = burn(tmp_path, features, 9, 9, band=2.9)  # 1 pixel straight and diagonally
    expected = np.full((9, 9), FOREST, np.uint8)
    expected[3:6, 3:6] = IGNORE_INDEX
    np.testing.assert_array_equal(labels, expected)
    labels, _ = burn(tmp_path / "wider", features, 9, 9, band=4.0)  # 2 straight, 1 diagonally
    expected[(2, 6, 4, 4), (4, 4, 2, 6)] = IGNORE_INDEX
    np.testing.assert_array_equal(labels, expected)


def test_features_in_degrees_land_within_half_a_pixel_of_where_they_belong(tmp_path):
    # the expected pixel, from rasterio's transform of one point (not the stage's geometry path)
    lon, lat = 3.000674, 36.145156
    (x,), (y,) = rasterio.warp.transform("EPSG:4326", CRS, [lon], [lat])
    column, row = ~from_origin(WEST, NORTH, PIXEL, PIXEL) @ (x, y)
    assert 10 < column < 50 and 10 < row < 50
    square = shapely.box(lon - 0.0001, lat - 0.00008, lon + 0.0001, lat + 0.00008)  # ~18 m a side
    write_scene(tmp_path / "scenes", 60, 60)
    geojson = {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"building": "yes"},
                "geometry": shapely.geometry.mapping(square),
            }
        ],
    }
    (tmp_path / "map.geojson").write_text(json.dumps(geojson))
    make_map_labels(
        MapLabelSettings(tmp_path / "scenes", tmp_path / "map.geojson", DEFAULT_TABLE,
                         tmp_path / "out", boundary_ignore_m=0)
    )  # fmt: skip
    with rasterio.open(tmp_path / "out" / "labels" / "scene.tif") as labels:
        rows, columns = np.nonzero(labels.read(1) == SETTLEMENT)
    assert 60 <= len(rows) <= 100  # ~18 x 18 m of 2 x 2 m pixels
    assert abs(columns.mean() + 0.5 - column) <= 0.5 and abs(rows.mean() + 0.5 - row) <= 0.5


def test_a_scene_in_degrees_gets_lines_buffered_in_metres(tmp_path):
    size = 0.00002  # degrees: 2.2 m of latitude at the equator
    transform = from_origin(3.0, 0.5, size, size)
    write_geotiff(tmp_path / "scenes" / "scene.tif", np.zeros((3, 100, 100), np.uint8),
                  crs="EPSG:4326", transform=transform)  # fmt: skip
    latitude = 0.5 - 50.5 * size  # the centre of row 50
    road = shapely.LineString([(2.999, latitude), (3.003, latitude)])
    write_map(
        tmp_path / "map.gpkg", [(road, {"highway": "residential", "width": "10"})], "EPSG:4326"
    )
    make_map_labels(settings(tmp_path, boundary_ignore_m=0))
    with rasterio.open(tmp_path / "out" / "labels" / "scene.tif") as labels:
        column = labels.read(1)[:, 50]
    # 5 m each side: rows whose centres lie within 5 m of latitude (110,574 m per degree here)
    within = [r for r in range(100) if abs(r - 50) * size * 110_574 <= 5]
    assert within == [48, 49, 50, 51, 52]
    assert np.flatnonzero(column == SETTLEMENT).tolist() == within


def random_map(seed: int, width: int, height: int) -> list[tuple]:
    """Overlapping boxes of every tier and roads of every kind of width over the test grid."""
    rng = np.random.default_rng(seed)
    tags = [{"natural": "wood"}, {"landuse": "farmland"}, {"landuse": "meadow"},
            {"natural": "water"}, {"building": "yes"}, {"natural": "bare_rock"}]  # fmt: skip
    features = []
    for _ in range(120):
        left, top = rng.uniform(-10, width), rng.uniform(-10, height)
        size = rng.uniform(2, 60, 2)
        box = shapely.box(x_at(left), y_at(top + size[1]), x_at(left + size[0]), y_at(top))
        features.append((box, tags[rng.integers(len(tags))]))
    for kind in ("primary", "footway", "residential", "track") * 5:
        points = rng.uniform(-10, max(width, height) + 10, (3, 2))
        line = shapely.LineString([(x_at(c), y_at(r)) for c, r in points])
        features.append((line, {"highway": kind, "lanes": str(rng.integers(0, 4))}))
    return features


def test_window_by_window_equals_the_whole_scene_at_once(tmp_path):
    write_scene(tmp_path / "scenes", 230, 170)
    write_map(tmp_path / "map.gpkg", random_map(0, 230, 170))
    outputs = []
    for window in (4096, 64, 37):
        root = tmp_path / f"window_{window}"
        summary = make_map_labels(
            MapLabelSettings(tmp_path / "scenes", tmp_path / "map.gpkg", DEFAULT_TABLE, root,
                             boundary_ignore_m=5.0, window_size=window)
        )  # fmt: skip
        with rasterio.open(root / "labels" / "scene.tif") as labels:
            outputs.append((labels.read(1), summary))
    (whole, summary), *windowed = outputs
    assert len(np.unique(whole)) == 7  # all six classes and ignore: the test means something
    for labels, other_summary in windowed:
        np.testing.assert_array_equal(labels, whole)
        assert other_summary == summary


# --- tiles, summary, files -----------------------------------------------------------------------


def test_tiles_below_the_labelled_share_are_left_out(tmp_path):
    bands = np.random.default_rng(0).integers(0, 256, (3, 20, 50), dtype=np.uint8)
    write_scene(tmp_path / "scenes", 50, 20, bands=bands)
    write_map(tmp_path / "map.gpkg", [(cells(0, 0, 35, 20), {"natural": "wood"})])
    tiles = TileSettings(tile_size=20, min_labelled_share=0.75)
    summary = make_map_labels(settings(tmp_path, boundary_ignore_m=0, tiles=tiles))
    out = tmp_path / "out"
    # tiles at columns 0, 20 and 30 (the last moved back to end at the border): 100%, 75%, 25%
    assert sorted(p.name for p in (out / "Train/images_png").iterdir()) == [
        "scene_0_0.png", "scene_0_20.png",
    ]  # fmt: skip
    assert (summary["tiles_kept"], summary["tiles_left_out"]) == (2, 1)
    assert summary["scenes"]["scene"]["tiles_left_out"] == 1
    image = read_image(out / "Train/images_png/scene_0_20.png")
    np.testing.assert_array_equal(image, bands[:, :, 20:40].transpose(1, 2, 0))
    mask = read_mask(out / "Train/masks_png/scene_0_20.png")
    assert (mask == runs([(FOREST, 15), (IGNORE_INDEX, 5)])).all()
    item = TargetDataset(out, "Train")[1]  # the layout a config reads
    assert item["img_id"] == "scene_0_20" and item["gt_semantic_seg"].shape == (20, 20)
    # at 0.25 the third tile (25% labelled) is kept too
    tiles = TileSettings(tile_size=20, min_labelled_share=0.25)
    assert make_map_labels(settings(tmp_path, boundary_ignore_m=0, tiles=tiles))["tiles_kept"] == 3


def test_geotiff_tiles_keep_every_band_and_png_tiles_refuse_them(tmp_path):
    bands = np.random.default_rng(1).integers(0, 10000, (4, 30, 30), dtype=np.uint16)
    write_scene(tmp_path / "scenes", 30, 30, bands=bands)
    write_map(tmp_path / "map.gpkg", [(cells(0, 0, 30, 30), {"landuse": "farmland"})])
    with pytest.raises(
        DataError, match=r"scene\.tif: 4 uint16 bands; PNG tiles hold 8-bit .*\"tif\""
    ):
        make_map_labels(settings(tmp_path))
    tiles = TileSettings(tile_size=16, tile_format="tif")
    summary = make_map_labels(settings(tmp_path, tiles=tiles))
    assert summary["tiles_kept"] == 4
    with rasterio.open(tmp_path / "out/Train/images_png/scene_14_14.tif") as tile:
        np.testing.assert_array_equal(tile.read(), bands[:, 14:30, 14:30])
        assert tile.crs == CRS and tile.transform == from_origin(x_at(14), y_at(14), PIXEL, PIXEL)
    with rasterio.open(tmp_path / "out/Train/masks_png/scene_14_14.tif") as mask:
        assert (mask.read(1) == CROPLAND).all()
        assert mask.tags()[ATTRIBUTION_TAG] == "© OpenStreetMap contributors, ODbL"


def test_the_summary_counts_features_by_tag_and_reason(tmp_path):
    features = [
        (cells(0, 0, 5, 5), {"building": "yes"}),
        (shapely.Point(x_at(7), y_at(7)), {"building": "yes"}),
        (cells(5, 5, 8, 8), {"building": "no"}),
        (cells(8, 8, 9, 9), {"amenity": "bench"}),
        (shapely.LineString([(x_at(1), y_at(1)), (x_at(9), y_at(9))]), {"landuse": "forest"}),
        vertical(3, highway="primary", width="wide", lanes="2"),
        vertical(7, highway="footway"),
    ]
    labels, summary = burn(tmp_path, features, 10, 10)
    assert summary["features"] == {
        "read": 7,
        "used": 3,
        "unmatched": 2,
        "used_per_tag": {"building=yes": 1, "highway=footway": 1, "highway=primary": 1},
        "skipped": {"line without a width (landuse=forest)": 1, "point": 1},
        "line_widths": {
            "bad width tag (fell back)": 1,
            "default of the tag": 1,
            "lanes x lane width": 1,
        },
    }
    counts = np.bincount(labels.ravel(), minlength=256)
    assert summary["pixels"] == 100 and summary["ignore"] == counts[IGNORE_INDEX] / 100
    assert summary["class_share"] == {name: counts[i] / 100 for i, name in enumerate(CLASSES)}
    assert summary["classes_never_mapped"] == ["other", "forest", "grassland", "cropland", "water"]
    assert summary["attribution"] == "© OpenStreetMap contributors, ODbL"
    assert summary["scenes"]["scene"]["features"] == 3


def test_two_runs_write_the_same_bytes_and_credit_the_map_data(tmp_path):
    write_scene(tmp_path / "scenes", 90, 70)
    write_map(tmp_path / "map.gpkg", random_map(1, 90, 70))
    table = write_table(tmp_path / "tags.py")
    digests = []
    for name in ("first", "second"):
        root = tmp_path / name
        make_map_labels(
            MapLabelSettings(tmp_path / "scenes", tmp_path / "map.gpkg", table, root,
                             tiles=TileSettings(tile_size=32, min_labelled_share=0.1))
        )  # fmt: skip
        files = sorted(path for path in root.rglob("*") if path.is_file())
        digests.append({str(path.relative_to(root)): file_digest(path) for path in files})
    assert digests[0] == digests[1] and len(digests[0]) > 3
    with rasterio.open(tmp_path / "first/labels/scene.tif") as labels:
        assert labels.tags()[ATTRIBUTION_TAG] == "test map data"
        assert labels.tags()["TIFFTAG_COPYRIGHT"] == "test map data"
        assert labels.nodata == IGNORE_INDEX and labels.colormap(1)[WATER][:3] == (0, 69, 255)


def test_a_failed_run_leaves_the_previous_output_as_it_was(tmp_path, monkeypatch):
    labels, _ = burn(tmp_path, [(cells(0, 0, 10, 10), {"natural": "wood"})], 20, 20)
    out = tmp_path / "out"
    before = {path: file_digest(path) for path in out.rglob("*") if path.is_file()}

    def full_disk(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("geoseg.maplabels.job.write_tiles", full_disk)
    with pytest.raises(WriteError, match="No space left on device"):
        make_map_labels(settings(tmp_path))
    assert {path: file_digest(path) for path in out.rglob("*") if path.is_file()} == before
    assert sorted(path.name for path in tmp_path.iterdir()) == ["map.gpkg", "out", "scenes"]


def test_map_data_in_osm_xml_reads_its_other_tags(tmp_path):
    """GDAL's OSM driver: common keys as columns, the rest (width, water) in other_tags."""
    nodes = {
        1: (60.0, 27.0), 2: (60.0004, 27.0),  # a road running north, 44 m
        3: (60.0001, 27.0002), 4: (60.0007, 27.0002), 5: (60.0007, 27.0008), 6: (60.0001, 27.0008),
    }  # fmt: skip
    node_xml = "".join(
        f'<node id="{i}" lat="{lat}" lon="{lon}" version="1"/>' for i, (lat, lon) in nodes.items()
    )
    ways = (
        '<way id="10" version="1"><nd ref="1"/><nd ref="2"/>'
        '<tag k="highway" v="residential"/><tag k="width" v="10 m"/></way>'
        '<way id="11" version="1"><nd ref="3"/><nd ref="4"/><nd ref="5"/><nd ref="6"/><nd ref="3"/>'
        '<tag k="water" v="pond"/><tag k="natural" v="wetland"/></way>'
    )
    osm = tmp_path / "map.osm"
    osm.write_text(f'<?xml version="1.0"?><osm version="0.6">{node_xml}{ways}</osm>')
    (x,), (y,) = rasterio.warp.transform("EPSG:4326", "EPSG:32635", [26.9995], [60.0009])
    write_geotiff(tmp_path / "scenes" / "scene.tif", np.zeros((3, 90, 60), np.uint8),
                  crs="EPSG:32635", transform=from_origin(round(x), round(y), PIXEL, PIXEL))  # fmt: skip
    summary = make_map_labels(
        MapLabelSettings(
            tmp_path / "scenes", osm, DEFAULT_TABLE, tmp_path / "out", boundary_ignore_m=0
        )
    )
    assert summary["features"]["used_per_tag"] == {"highway=residential": 1, "water=pond": 1}
    assert summary["features"]["line_widths"] == {"width tag": 1}
    # the pond: 33 x 67 m of 120 x 180 m; the road: 10 m wide (5 pixels) and 44 m long, plus its ends
    assert summary["class_share"]["water"] == pytest.approx(2200 / 21600, abs=0.01)
    assert summary["class_share"]["settlement"] == pytest.approx((440 + 79) / 21600, abs=0.003)


# --- errors --------------------------------------------------------------------------------------


def one_line_error(kind, settings_: MapLabelSettings) -> str:
    with pytest.raises(kind) as error:
        make_map_labels(settings_)
    assert "\n" not in str(error.value)
    return str(error.value)


def test_map_data_errors_name_the_file_and_what_was_expected(tmp_path):
    write_scene(tmp_path / "scenes", 20, 20)
    run = settings(tmp_path)
    assert one_line_error(DataError, run) == f"{run.map_data}: map data file not found"
    run.map_data.write_bytes(b"not a geopackage")
    assert one_line_error(DataError, run).startswith(f"{run.map_data}: unreadable map data (")
    run.map_data.unlink()
    shapefile = write_map(
        tmp_path / "map.shp", [(cells(0, 0, 5, 5), {"building": "yes"})], crs=None
    )
    message = one_line_error(
        DataError, MapLabelSettings(run.scenes, shapefile, DEFAULT_TABLE, run.output_root)
    )
    assert message.startswith(f"{shapefile}: layer 'map' has no CRS; expected map data with its")
    far = shapely.box(x_at(1000), y_at(1000), x_at(1010), y_at(990))
    write_map(run.map_data, [(far, {"building": "yes"})])
    assert one_line_error(DataError, run) == (
        f"{run.map_data}: no feature of the tag table {DEFAULT_TABLE} lies on any scene in "
        f"{run.scenes}; expected map data that covers them"
    )
    assert not run.output_root.exists()


def test_a_scene_the_map_data_misses_is_a_warning(tmp_path, caplog):
    write_scene(tmp_path / "scenes", 20, 20, name="covered")
    far = write_scene(tmp_path / "elsewhere", 20, 20, name="far")
    with rasterio.open(far, "r+") as dataset:
        dataset.transform = from_origin(WEST + 5000, NORTH, PIXEL, PIXEL)
    far.rename(tmp_path / "scenes" / "far.tif")
    write_map(tmp_path / "map.gpkg", [(cells(0, 0, 10, 10), {"building": "yes"})])
    with caplog.at_level(logging.WARNING):
        summary = make_map_labels(settings(tmp_path))
    assert "far.tif: no map feature lies on this scene; it gets no labels" in caplog.text
    assert summary["scenes_without_map_data"] == ["far.tif"] and list(summary["scenes"]) == [
        "covered"
    ]
    assert sorted(p.name for p in (tmp_path / "out" / "labels").iterdir()) == ["covered.tif"]
    assert "gives no pixel of other, forest, grassland, cropland, water" in caplog.text


def test_scene_and_output_errors(tmp_path):
    (tmp_path / "scenes").mkdir()
    write_map(tmp_path / "map.gpkg", [(cells(0, 0, 5, 5), {"building": "yes"})])
    run = settings(tmp_path)
    assert one_line_error(DataError, run) == f"{run.scenes}: no GeoTIFF scenes (.tif, .tiff) found"
    with rasterio.open(tmp_path / "scenes" / "plain.tif", "w", driver="GTiff", width=4, height=4,
                       count=1, dtype="uint8") as dataset:  # fmt: skip
        dataset.write(np.zeros((1, 4, 4), np.uint8))
    assert one_line_error(DataError, run).startswith(
        f"{run.scenes / 'plain.tif'}: the scene has no CRS or no geotransform"
    )
    (tmp_path / "scenes" / "plain.tif").unlink()
    write_scene(run.scenes, 10, 10)
    (run.output_root / "mine").mkdir(parents=True)
    assert (
        "not made by map labels (no summary.json of this stage); refusing to replace it"
        in one_line_error(DataError, run)
    )
    inside = MapLabelSettings(run.scenes, run.map_data, DEFAULT_TABLE, run.scenes / "labels")
    assert "overlaps the scenes folder" in one_line_error(DataError, inside)


def test_an_unknown_class_stops_the_run_before_reading_anything(tmp_path):
    table = write_table(
        tmp_path / "tags.py", TEST_TABLE.replace('"water", "water")', '"water", "lake")')
    )
    run = settings(tmp_path, table)  # no scenes, no map data: the table is checked first
    message = one_line_error(ConfigError, run)
    assert message == (
        f"{table}: rules[2] ('water', 'natural', 'water', 'lake'): class 'lake' is not a class; "
        "expected one of other, forest, grassland, cropland, settlement, water"
    )


@pytest.mark.slow  # two runs of the script, each importing the stack
def test_the_script_writes_the_layout_and_errors_in_one_line(tmp_path):
    write_scene(tmp_path / "scenes", 40, 40)
    write_map(tmp_path / "map.gpkg", [(cells(0, 0, 40, 40), {"landuse": "farmland"})])
    command = ["map_labels.py", "--scenes", tmp_path / "scenes", "--map-data",
               tmp_path / "map.gpkg", "--output-root", tmp_path / "out", "--tile-size", "16"]  # fmt: skip
    result = run_python(*command, timeout=300, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert (
        "1 scenes, 1 features used: other 0.0%, forest 0.0%, grassland 0.0%, cropland 100.0%"
        in result.stdout
    )
    assert "9 tiles kept, 0 left out" in result.stdout
    assert len(list((tmp_path / "out" / "Train" / "masks_png").iterdir())) == 9
    result = run_python(
        *command[:4], tmp_path / "missing.gpkg", *command[5:], timeout=300, cwd=REPO_ROOT
    )
    assert result.returncode == 2
    assert result.stderr == f"error: {tmp_path / 'missing.gpkg'}: map data file not found\n"


# --- the real OpenStreetMap extracts -------------------------------------------------------------

EXTRACTS = {
    "small_finland": ("settlement", "forest", "cropland"),
    "helsinki": ("water", "settlement"),
}


@pytest.mark.parametrize("name", EXTRACTS)
def test_real_extracts_rasterise_onto_a_utm_grid(tmp_path, name):
    extract = REALDATA / "osm" / f"{name}.osm.pbf"
    if not extract.is_file():
        pytest.skip(f"real OpenStreetMap extract not found at {extract}")
    west, south, east, north = pyogrio.read_info(extract, layer="multipolygons")["total_bounds"]
    left, bottom, right, top = rasterio.warp.transform_bounds(
        "EPSG:4326", "EPSG:32635", west, south, east, north
    )
    transform = from_origin(np.floor(left / 2) * 2, np.ceil(top / 2) * 2, 2.0, 2.0)
    width, height = int((right - transform.c) // 2), int((transform.f - bottom) // 2)
    write_geotiff(tmp_path / "scenes" / f"{name}.tif", np.zeros((3, height, width), np.uint8),
                  crs="EPSG:32635", transform=transform)  # fmt: skip
    digests = []
    for run in ("first", "second"):
        summary = make_map_labels(
            MapLabelSettings(tmp_path / "scenes", extract, DEFAULT_TABLE, tmp_path / run)
        )
        files = sorted(path for path in (tmp_path / run).rglob("*") if path.is_file())
        digests.append(
            [(str(path.relative_to(tmp_path / run)), file_digest(path)) for path in files]
        )
    assert digests[0] == digests[1]
    with rasterio.open(tmp_path / "first" / "labels" / f"{name}.tif") as labels:
        assert (labels.crs, labels.transform, labels.width, labels.height) == (
            rasterio.crs.CRS.from_epsg(32635), transform, width, height,
        )  # fmt: skip
        assert labels.tags()[ATTRIBUTION_TAG] == "© OpenStreetMap contributors, ODbL"
        counts = np.bincount(labels.read(1).ravel(), minlength=256)
    for class_name in EXTRACTS[name]:
        assert counts[CLASSES.index(class_name)] > 0, class_name
    assert 0 < summary["ignore"] < 1 and summary["ignore"] == round(
        counts[IGNORE_INDEX] / counts.sum(), 6
    )
    assert summary["attribution"] == "© OpenStreetMap contributors, ODbL"
    assert summary["tiles_kept"] + summary["tiles_left_out"] > 1


@pytest.mark.slow  # the benchmark's smallest run, in a subprocess
def test_the_benchmark_measures_a_small_scene(tmp_path):
    output = tmp_path / "result.json"
    result = run_python(
        "benchmarks/map_labels.py", "--size", "300", "--output", output, timeout=300, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    figures = json.loads(output.read_text())
    assert figures["pixels"] == 90_000 and figures["features"] == figures["features_used"] > 100
    assert figures["pixels_per_s"] == pytest.approx(90_000 / figures["seconds"])
    assert figures["peak_rss_mib"] >= figures["rss_after_imports_mib"] > 0
