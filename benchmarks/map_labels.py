"""Map labels: pixels labelled per second and peak memory for a large scene at real map density.

    python benchmarks/map_labels.py --output benchmarks/results/cpu-map-labels.json
    python benchmarks/map_labels.py --size 2000                  # quicker
    python benchmarks/map_labels.py --extract region.osm.pbf     # another extract's density
    python benchmarks/map_labels.py --size 20000 --features 100000 \
        --output benchmarks/results/cpu-map-labels-20000.json     # the memory bound's case

Writes a size x size GeoTIFF scene (UTM 35N, 2 m pixels: 20 x 20 km at 10,000 px) and a GeoPackage
of synthetic map features in EPSG:4326 (so they are reprojected, as OpenStreetMap data is) at the
density of a real extract: buildings, land-use and land-cover areas and roads per km2 as the
small Finnish extract of the tests holds them (``DENSITY``; ``--extract`` measures another). Then
runs map_labels.py on them in a fresh process (the default tag table, 512 px PNG tiles) and reports
the time of its main (the interpreter's start-up left out), label pixels per second, and the
process's peak resident memory next to that of the same process after its imports alone (Linux:
read from /proc). The areas' sizes make about as much of the scene labelled as in the extract.
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyogrio
import rasterio
import rasterio.warp
import shapely
from pyogrio.raw import write
from rasterio.crs import CRS
from rasterio.transform import from_origin
from rasterio.windows import Window

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoseg.datasets.io import PixelSize  # noqa: E402
from geoseg.evaluation.report import cpu_model  # noqa: E402
from geoseg.maplabels import load_tag_table  # noqa: E402
from geoseg.maplabels.grid import SceneGrid, reproject  # noqa: E402
from geoseg.maplabels.map_data import read_map_data  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "map_labels.py"
TABLE = REPO / "config" / "map_tags.py"
UTM = CRS.from_epsg(32635)
PIXEL = 2.0
ORIGIN = (400000.0, 6720000.0)  # south-east Finland, as the extract
# Features per km2 of small_finland.osm.pbf (the tests' real extract), by what they become:
# --extract measures them in another file.
DENSITY = {"buildings": 448.2, "areas": 12.1, "lines": 68.1}
ROADS = ("residential", "cycleway", "service", "footway", "tertiary", "secondary", "path")
AREAS = (("landuse", "residential"), ("landuse", "farmland"), ("natural", "wood"),
         ("landuse", "industrial"), ("natural", "scrub"), ("landuse", "meadow"))  # fmt: skip
# Runs map_labels.py's main with the arguments after it in this fresh process and prints the
# seconds main took and the process's peak resident memory (KiB) after the imports and at the end:
# VmHWM, which starts afresh at exec (ru_maxrss keeps the forking parent's).
CHILD = (
    "import re, runpy, sys, time; "
    "peak = lambda: re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read())[1]; "
    "module = runpy.run_path(sys.argv[1]); imported = peak(); "
    "sys.argv = ['map_labels.py', *sys.argv[2:]]; start = time.perf_counter(); module['main'](); "
    "print(time.perf_counter() - start, imported, peak())"
)


def measure_density(extract: Path) -> dict[str, float]:
    """Features per km2 of ``extract`` that the default table uses: buildings, other areas, lines."""
    west, south, east, north = pyogrio.read_info(extract, layer=0)["total_bounds"]
    left, bottom, right, top = rasterio.warp.transform_bounds(
        CRS.from_epsg(4326), UTM, west, south, east, north
    )
    width, height = int((right - left) // PIXEL), int((top - bottom) // PIXEL)
    grid = SceneGrid(
        extract, UTM, from_origin(left, top, PIXEL, PIXEL), width, height, PixelSize(PIXEL, PIXEL)
    )
    features = read_map_data(extract, load_tag_table(TABLE), [grid], 0.0)
    lines = ~np.isnan(features.widths)
    buildings = ~lines & (features.tiers == 0)
    km2 = width * height * PIXEL**2 / 1e6
    return {
        "buildings": round(float(buildings.sum()) / km2, 1),
        "areas": round(float((~lines & ~buildings).sum()) / km2, 1),
        "lines": round(float(lines.sum()) / km2, 1),
    }  # fmt: skip


def write_scene(path: Path, size: int, block: int = 512) -> None:
    """A size x size RGB uint8 GeoTIFF of zeros on the UTM grid, written block by block."""
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True,
        blockxsize=block, blockysize=block, compress="deflate", crs=UTM,
        transform=from_origin(*ORIGIN, PIXEL, PIXEL),
    )  # fmt: skip
    zeros = np.zeros((3, block, block), np.uint8)
    with rasterio.open(path, "w", **profile) as raster:
        for top in range(0, size, block):
            for left in range(0, size, block):
                height, width = min(block, size - top), min(block, size - left)
                raster.write(zeros[:, :height, :width], window=Window(left, top, width, height))


def write_features(path: Path, size: int, density: dict[str, float], seed: int = 0) -> int:
    """Random buildings (8-20 m), areas (60-700 m, 24 vertices) and roads (3-6 vertices, 100-600
    m) over the scene at ``density``, written in EPSG:4326; their number."""
    rng = np.random.default_rng(seed)
    extent = size * PIXEL
    km2 = extent**2 / 1e6
    west, north = ORIGIN
    geometries, keys, values = [], [], []

    def place(count: int, low: float, high: float) -> tuple[np.ndarray, np.ndarray]:
        centres = rng.uniform(0, extent, (count, 2)) * (1, -1) + (west, north)
        return centres, rng.uniform(low, high, (count, 2))

    centres, sizes = place(round(density["buildings"] * km2), 8, 20)
    geometries += list(shapely.box(*(centres - sizes / 2).T, *(centres + sizes / 2).T))
    keys += ["building"] * len(centres)
    values += ["yes"] * len(centres)
    centres, sizes = place(round(density["areas"] * km2), 60, 700)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    for centre, (a, b) in zip(centres, sizes, strict=True):
        radius = rng.uniform(0.7, 1.0, 24)
        ring = np.column_stack([a * radius * np.cos(angles), b * radius * np.sin(angles)]) / 2
        geometries.append(shapely.Polygon(ring + centre))
        key, value = AREAS[rng.integers(len(AREAS))]
        keys.append(key)
        values.append(value)
    centres, _ = place(round(density["lines"] * km2), 0, 1)
    for centre in centres:
        steps = rng.normal(0, 1, (rng.integers(3, 7), 2))
        steps *= rng.uniform(100, 600) / np.linalg.norm(steps, axis=1).sum()
        geometries.append(shapely.LineString(centre + np.cumsum(steps, axis=0)))
        keys.append("highway")
        values.append(ROADS[rng.integers(len(ROADS))])
    geometries = reproject(np.array(geometries, dtype=object), UTM, CRS.from_epsg(4326))
    columns = {key: np.array([v if k == key else None for k, v in zip(keys, values, strict=True)],
                             dtype=object) for key in ("building", "highway", "landuse", "natural")}  # fmt: skip
    write(path, shapely.to_wkb(geometries), list(columns.values()), fields=list(columns),
          crs="EPSG:4326", geometry_type="Unknown", driver="GPKG")  # fmt: skip
    return len(geometries)


def run(scenes: Path, features: Path, output: Path) -> dict:
    """Seconds and peak memory (MiB) of map_labels.py in a fresh process."""
    arguments = ["--scenes", str(scenes), "--map-data", str(features), "--tags", str(TABLE),
                 "--output-root", str(output)]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(SCRIPT), *arguments],
        check=True,
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    seconds, imported_kib, peak_kib = result.stdout.split()[-3:]
    return {
        "seconds": float(seconds),
        "peak_rss_mib": int(peak_kib) / 1024,
        "rss_after_imports_mib": int(imported_kib) / 1024,
        "summary": json.loads((output / "summary.json").read_text(encoding="utf-8")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=10_000, help="scene pixels a side")
    parser.add_argument("--extract", type=Path, help="measure the feature density of this file")
    parser.add_argument(
        "--features", type=int, help="this many features instead, in the same proportions"
    )
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    density = measure_density(args.extract) if args.extract else DENSITY
    if args.features:
        km2 = (args.size * PIXEL) ** 2 / 1e6
        scale = args.features / (sum(density.values()) * km2)
        density = {kind: value * scale for kind, value in density.items()}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        (folder / "scenes").mkdir()
        write_scene(folder / "scenes" / "scene.tif", args.size)
        count = write_features(folder / "map.gpkg", args.size, density)
        figures = run(folder / "scenes", folder / "map.gpkg", folder / "out")
    summary = figures.pop("summary")
    pixels = args.size**2
    result = {
        "benchmark": "map_labels",
        "machine": f"{cpu_model()}, {os.cpu_count()} cores",
        "command": " ".join(["python benchmarks/map_labels.py", *sys.argv[1:]]),
        "size": args.size,
        "pixel_m": PIXEL,
        "density_per_km2": density,
        "features": count,
        "features_used": summary["features"]["used"],
        "pixels": pixels,
        **figures,
        "pixels_per_s": pixels / figures["seconds"],
        "tiles_kept": summary["tiles_kept"],
        "ignore_share": summary["ignore"],
    }
    print(
        f"{args.size} x {args.size} px ({pixels / 1e6:.0f} MP), {count} features: "
        f"{figures['seconds']:.1f} s, {result['pixels_per_s'] / 1e6:.2f} MP/s, peak "
        f"{figures['peak_rss_mib']:.0f} MiB ({figures['rss_after_imports_mib']:.0f} MiB after the "
        f"imports); {result['machine']}"
    )
    if args.output:
        args.output.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
