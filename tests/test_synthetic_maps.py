"""The map scenes: georeferenced target scenes drawn from shapes, and the OpenStreetMap file of those
shapes with a mapper's errors (omissions, shifts, simplification, width tags)."""

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import rasterio
from rasterio.transform import xy
from rasterio.warp import transform as reproject_points

from geoseg.datasets.synthetic import (
    FOREST,
    GRASSLAND,
    NUM_CLASSES,
    SETTLEMENT,
    TARGET_STYLE,
    WATER,
    synthesize_tile,
)
from geoseg.datasets.synthetic_maps import (
    AREA_TAGS,
    ROADS,
    WATERWAYS,
    MapErrors,
    MapFeature,
    map_features,
    scene_transform,
    synthesize_map_scene,
    write_map_scenes,
)

from conftest import tree_sha256

SIZE = 256
SCENES = 2
SEED = 3
ERRORS = MapErrors()  # the defaults, as the demo writes them
# The target class of each land-cover tag.
TAG_CLASS = {next(iter(t.items())): c for c, options in AREA_TAGS.items() for t in options}
TAG_CLASS[("natural", "water")] = WATER


@pytest.fixture(scope="module")
def maps(tmp_path_factory) -> tuple[Path, dict[str, tuple[int, int]]]:
    root = tmp_path_factory.mktemp("maps")
    return root, write_map_scenes(root, scenes=SCENES, size=SIZE, seed=SEED)


def read_truths(root: Path) -> list[np.ndarray]:
    truths = []
    for index in range(SCENES):
        with rasterio.open(root / "truth" / f"scene_{index:04d}.tif") as dataset:
            truths.append(dataset.read(1))
    return truths


def read_ways(root: Path) -> list[tuple[int, np.ndarray, dict[str, str]]]:
    """Every way of ``map.osm``: the scene it maps, its nodes in that scene's pixels ((N, 2) x, y)
    and its tags."""
    osm = ET.parse(root / "map.osm").getroot()
    assert osm.get("version") == "0.6"
    nodes = {n.get("id"): (float(n.get("lon")), float(n.get("lat"))) for n in osm.iter("node")}
    ways = []
    for way in osm.iter("way"):
        lon, lat = np.array([nodes[nd.get("ref")] for nd in way.iter("nd")]).T
        x, y = reproject_points("EPSG:4326", "EPSG:32635", lon, lat)
        # The scenes lie two widths apart: a way maps the one whose centre is nearest.
        centres = [xy(scene_transform(i, SIZE), SIZE / 2, SIZE / 2) for i in range(SCENES)]
        scene = int(np.argmin([abs(np.mean(x) - cx) + abs(np.mean(y) - cy) for cx, cy in centres]))
        inverse = ~scene_transform(scene, SIZE)
        columns = inverse.a * np.array(x) + inverse.b * np.array(y) + inverse.c
        rows = inverse.d * np.array(x) + inverse.e * np.array(y) + inverse.f
        tags = {tag.get("k"): tag.get("v") for tag in way.iter("tag")}
        ways.append((scene, np.stack([columns, rows], axis=1), tags))
    return ways


def near(truth: np.ndarray, point: np.ndarray, radius: float, kind: int) -> bool:
    """Whether a pixel of class ``kind`` lies within ``radius`` pixels of ``point`` (x, y)."""
    rows, columns = np.nonzero(truth == kind)
    return bool((np.hypot(columns + 0.5 - point[0], rows + 0.5 - point[1]) <= radius).any())


def test_scenes_are_georeferenced_target_land_cover(maps):
    root, _ = maps
    truths = read_truths(root)
    for index, truth in enumerate(truths):
        name = f"scene_{index:04d}.tif"
        with rasterio.open(root / "images" / name) as image, rasterio.open(root / "truth" / name):
            assert image.crs.to_epsg() == 32635 and image.res == (1.0, 1.0)
            assert (image.count, image.dtypes[0], image.shape) == (3, "uint8", (SIZE, SIZE))
            assert image.transform == scene_transform(index, SIZE)
        assert truth.max() < NUM_CLASSES  # every pixel has a class: no ignore
    assert scene_transform(1, SIZE).c - scene_transform(0, SIZE).c == 2 * SIZE
    shares = np.bincount(np.concatenate(truths).ravel(), minlength=NUM_CLASSES) / (
        SCENES * SIZE * SIZE
    )
    assert (shares > 0.005).all(), shares  # every class occurs


def test_classes_look_as_in_the_target_tiles():
    rng = np.random.default_rng(0)
    scenes = [synthesize_map_scene(rng, SIZE) for _ in range(3)]
    tiles = [synthesize_tile(rng, 64, TARGET_STYLE) for _ in range(60)]
    for kind in (FOREST, GRASSLAND, SETTLEMENT, WATER):
        means = []
        for sample in (scenes, tiles):
            pixels = np.concatenate([item.image[item.mask == kind] for item in sample])
            means.append(pixels.mean(axis=0))
        assert np.abs(means[0] - means[1]).max() < 20, (kind, means)


def test_map_file_reads_with_pyogrio(maps):
    pyogrio = pytest.importorskip("pyogrio.raw", reason="pyogrio reads the map as GDAL does")
    root, counts = maps
    lines = pyogrio.read(root / "map.osm", layer="lines")
    fields = dict(zip(lines[0]["fields"], lines[3], strict=True))
    assert lines[0]["crs"] == "EPSG:4326" and len(lines[2]) == counts["lines"][1] > 0
    highways, waterways = fields["highway"], fields["waterway"]
    assert set(highways) - {None} == {highway for highway, _ in ROADS}
    assert set(waterways) - {None} <= {waterway for waterway, _, _ in WATERWAYS}
    assert all((h is None) != (w is None) for h, w in zip(highways, waterways, strict=True))
    assert any('"width"=>' in (tags or "") for tags in fields["other_tags"])

    areas = pyogrio.read(root / "map.osm", layer="multipolygons")
    fields = dict(zip(areas[0]["fields"], areas[3], strict=True))
    assert len(areas[2]) == counts["areas"][1]
    buildings = sum(value == "yes" for value in fields["building"])
    assert buildings > 100
    for building, landuse, natural in zip(
        fields["building"], fields["landuse"], fields["natural"], strict=True
    ):
        if building is None:
            tag = ("landuse", landuse) if landuse else ("natural", natural)
            assert tag in TAG_CLASS, tag


def test_mapped_features_land_where_the_truth_says(maps):
    root, _ = maps
    truths = read_truths(root)
    slack = ERRORS.max_shift_px + ERRORS.simplify_px + 1
    on_settlement, on_line, agreement = [], [], []
    for scene, points, tags in read_ways(root):
        truth = truths[scene]
        if "building" in tags:
            centre = points[:-1].mean(axis=0)
            column, row = np.clip(centre.astype(int), 0, SIZE - 1)
            on_settlement.append(truth[row, column] == SETTLEMENT)
            assert near(truth, centre, slack, SETTLEMENT), tags
        elif "highway" in tags or "waterway" in tags:
            # A waterway's node may lie under a road that bridges it.
            kind = SETTLEMENT if "highway" in tags else WATER
            inside = points[((points >= 0) & (points < SIZE)).all(axis=1)]
            on_line.append([near(truth, point, slack, kind) for point in inside])
        else:
            # Land cover: its pixels' classes, mostly its own (roads, lakes, rivers lie on some).
            drawn = np.zeros_like(truth)
            cv2.fillPoly(drawn, [np.round((points - 0.5) * 16).astype(np.int32)], 1, shift=4)
            shares = np.bincount(truth[drawn > 0], minlength=NUM_CLASSES) / (drawn > 0).sum()
            kind = TAG_CLASS[next(iter(tags.items()))]
            agreement.append((shares.argmax() == kind, shares[kind]))
    assert len(on_settlement) > 100 and np.mean(on_settlement) > 0.9
    majority, share = np.array(agreement).T
    assert len(agreement) > 20 and majority.mean() > 0.9 and share.mean() > 0.75
    assert len(on_line) > 5 and np.mean(np.concatenate(on_line)) > 0.95


def test_omitted_share_of_the_scenes(maps):
    _, counts = maps
    drawn, mapped = counts["areas"]
    assert drawn > 200
    # Two standard errors of a share of 0.2 over some 250 features.
    assert abs(1 - mapped / drawn - ERRORS.omitted_areas) < 0.05
    drawn, mapped = counts["lines"]
    assert drawn - mapped <= 2  # 5% of a dozen lines


def test_error_rates_and_shifts_are_as_asked():
    errors = MapErrors(omitted_areas=0.3, omitted_lines=0.1, width_tagged=0.4, lanes_tagged=0.35)
    corners = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    line = np.array([[0.0, 0.0], [50.0, 0.0]])
    features = [MapFeature(corners + i, {"id": str(i)}) for i in range(2000)]
    features += [MapFeature(line, {"highway": "tertiary"}, 7) for _ in range(2000)]
    features += [MapFeature(line, {"waterway": "river"}, 10) for _ in range(2000)]
    mapped = map_features(features, np.random.default_rng(0), errors)
    areas = [feature for feature in mapped if not feature.is_line]
    roads = [feature.tags for feature in mapped if "highway" in feature.tags]
    rivers = [feature.tags for feature in mapped if "waterway" in feature.tags]
    assert abs(1 - len(areas) / 2000 - 0.3) < 0.03
    assert abs(1 - (len(roads) + len(rivers)) / 4000 - 0.1) < 0.02
    for tags in (roads, rivers):
        assert abs(np.mean(["width" in t for t in tags]) - 0.4) < 0.03
    assert {t["width"] for t in roads if "width" in t} == {"7"}
    assert abs(np.mean(["lanes" in t for t in roads]) - 0.35) < 0.03
    assert {t["lanes"] for t in roads if "lanes" in t} == {"2"}  # 7 m / 3.5 m
    assert not any("lanes" in t for t in rivers)
    # A square keeps its corners under simplification: it moves by its shift, uniform in length.
    moves = [f.points - corners - int(f.tags["id"]) for f in areas]
    assert all(np.allclose(move, move[0]) for move in moves)
    lengths = np.array([np.linalg.norm(move[0]) for move in moves])
    assert lengths.max() <= errors.max_shift_px + 1e-9
    assert abs(lengths.mean() - errors.max_shift_px / 2) < 0.1


def test_outlines_are_simplified_within_the_tolerance():
    theta = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    circle = 100 + 50 * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    errors = MapErrors(omitted_areas=0, max_shift_px=0, simplify_px=1.5)
    lake = MapFeature(circle, {"natural": "water"})
    (mapped,) = map_features([lake], np.random.default_rng(0), errors)
    assert 10 < len(mapped.points) < 40
    ring = mapped.points.astype(np.float32)[:, None]
    distances = [abs(cv2.pointPolygonTest(ring, (float(x), float(y)), True)) for x, y in circle]
    assert max(distances) <= 1.5 + 1e-3


def test_same_seed_same_bytes_and_errors_apart_from_scenes(tmp_path):
    first = write_map_scenes(tmp_path / "a", scenes=1, size=128, seed=5)
    again = write_map_scenes(tmp_path / "b", scenes=1, size=128, seed=5)
    assert first == again and tree_sha256(tmp_path / "a") == tree_sha256(tmp_path / "b")
    write_map_scenes(tmp_path / "c", scenes=1, size=128, seed=5, errors=MapErrors(max_shift_px=9))
    for folder in ("images", "truth"):  # the scenes do not depend on the error rates
        assert tree_sha256(tmp_path / "a" / folder) == tree_sha256(tmp_path / "c" / folder)
    assert (tmp_path / "a" / "map.osm").read_bytes() != (tmp_path / "c" / "map.osm").read_bytes()
    write_map_scenes(tmp_path / "d", scenes=1, size=128, seed=6)
    assert tree_sha256(tmp_path / "a") != tree_sha256(tmp_path / "d")


def test_a_map_of_nothing_is_an_empty_osm_file(tmp_path):
    everything = MapErrors(omitted_areas=1, omitted_lines=1)
    counts = write_map_scenes(tmp_path, scenes=1, size=64, errors=everything)
    assert counts["areas"][1] == counts["lines"][1] == 0 < counts["areas"][0]
    assert len(ET.parse(tmp_path / "map.osm").getroot()) == 0


def test_bad_error_rates_are_refused():
    with pytest.raises(ValueError, match=r"MapErrors.omitted_areas=1.5: expected a share"):
        MapErrors(omitted_areas=1.5)
    with pytest.raises(ValueError, match=r"width_tagged \+ lanes_tagged = 1.2"):
        MapErrors(width_tagged=0.6, lanes_tagged=0.6)
