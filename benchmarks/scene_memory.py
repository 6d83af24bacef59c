"""Large-scene inference: peak memory and time per megapixel, a small scene against a large one.

    python benchmarks/scene_memory.py                       # 2,048^2 and 16,384^2, demo model
    python benchmarks/scene_memory.py --sizes 1024 4096     # quicker
    python benchmarks/scene_memory.py --tile-size 512 \
        --output benchmarks/results/cpu-scene-memory-tile512.json   # the figures of docs/mapping.md

Writes a synthetic RGB GeoTIFF per size (tiled, compressed, with a CRS), then maps each with
``ensemble_inference.py`` (one model at scale 1 without flips, ``--tile-size`` windows) in a fresh
process, and reports that process's peak resident memory and the time of the mapping itself (model
loading, reading, predicting, writing; the interpreter's start-up left out) per megapixel. Tiles
are read and blended window by window; only the partial sums of the overlap rows between two tile
rows span the scene's width (classes x overlap x width), so the peak barely grows with the scene,
whose area grows 64 times.
"""

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.windows import Window

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import build  # noqa: E402
from geoseg.classes import CLASSES, IGNORE_INDEX  # noqa: E402
from geoseg.models.checkpoint import save_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
# Runs ensemble_inference.py's main with the arguments after it, in this fresh process, and prints
# the seconds main took (the interpreter's and torch's start-up left out) and the process's peak
# resident memory (KiB).
CHILD = (
    "import resource, sys, time; sys.path.insert(0, sys.argv[1]); import ensemble_inference; "
    "sys.argv = ['ensemble_inference.py', *sys.argv[2:]]; start = time.perf_counter(); "
    "ensemble_inference.main(); seconds = time.perf_counter() - start; "
    "print(seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
)


def write_scene(path: Path, size: int, block: int = 512) -> None:
    """A size x size RGB uint8 GeoTIFF of smooth synthetic texture, written block by block."""
    profile = dict(
        driver="GTiff", width=size, height=size, count=3, dtype="uint8", tiled=True,
        blockxsize=block, blockysize=block, compress="deflate", crs="EPSG:32633",
        transform=from_origin(500000, 5000000, 0.5, 0.5),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    pattern = rng.integers(0, 256, (3, block, block), dtype=np.uint8)
    with rasterio.open(path, "w", **profile) as raster:
        for top in range(0, size, block):
            for left in range(0, size, block):
                height, width = min(block, size - top), min(block, size - left)
                shifted = np.roll(pattern, (top // block, left // block), axis=(1, 2))
                raster.write(shifted[:, :height, :width], window=Window(left, top, width, height))


def map_scene(scene: Path, output_dir: Path, checkpoint: Path, tile_size: int) -> dict:
    """Peak memory (MiB) and seconds of ensemble_inference.py on ``scene`` in a fresh process."""
    arguments = [
        "--input-dir", str(scene.parent), "--output-dir", str(output_dir),
        "--checkpoints", str(checkpoint), "--scales", "1.0", "--flips", "none",
        "--tile-size", str(tile_size), "--device", "cpu",
    ]  # fmt: skip
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(REPO), *arguments],
        check=True,
        capture_output=True,
        text=True,
    )
    seconds, peak_kib = result.stdout.split()[-2:]
    return {"peak_mib": int(peak_kib) / 1024, "seconds": float(seconds)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sizes", type=int, nargs=2, default=(2048, 16384), metavar=("SMALL", "LARGE")
    )
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--output", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    rows = {}
    with tempfile.TemporaryDirectory() as folder:
        folder = Path(folder)
        checkpoint = folder / "demo.ckpt"
        save_model(build("demo", seed=0), checkpoint, classes=CLASSES, ignore_index=IGNORE_INDEX)
        for size in args.sizes:
            scene_dir = folder / f"scene_{size}"
            scene_dir.mkdir()
            write_scene(scene_dir / f"scene_{size}.tif", size)
            figures = map_scene(scene_dir / f"scene_{size}.tif", folder / f"out_{size}",
                                checkpoint, args.tile_size)  # fmt: skip
            megapixels = size * size / 1e6
            rows[size] = {**figures, "s_per_megapixel": figures["seconds"] / megapixels}
            print(
                f"{size} x {size} ({megapixels:.1f} MP): peak {figures['peak_mib']:.0f} MiB, "
                f"{figures['seconds']:.1f} s, {rows[size]['s_per_megapixel']:.3f} s/MP",
                flush=True,
            )
    small, large = (rows[size] for size in args.sizes)
    ratios = {
        "peak_memory": large["peak_mib"] / small["peak_mib"],
        "time_per_megapixel": large["s_per_megapixel"] / small["s_per_megapixel"],
    }
    print(
        f"large / small: peak memory {ratios['peak_memory']:.2f}x (target <= 1.5x), time per "
        f"megapixel {ratios['time_per_megapixel']:.2f}x (target <= 1.2x)"
    )
    if args.output:
        args.output.write_text(json.dumps({"sizes": rows, "ratios": ratios}, indent=2) + "\n")


if __name__ == "__main__":
    main()
