"""ensemble_inference.py over two processes (torchrun, CPU): each its own files, the same outputs."""

import os
import subprocess
import sys

import numpy as np
import pytest
import rasterio

from geoseg.datasets.io import read_mask
from geoseg.inference.shards import shard

from conftest import REPO_ROOT, random_bands, save, sharp_ftunetformer, write_geotiff, write_inputs

# compared with float32 references: precision pinned, whatever the CPU
FAST = ["--num-workers", "0", "--scales", "1.0", "--flips", "none", "--precision", "fp32"]


def test_shards_cover_every_input_once():
    paths = list(range(7))
    shares = [shard(paths, rank, 3) for rank in range(3)]
    assert sorted(p for share in shares for p in share) == paths
    assert [len(share) for share in shares] == [3, 2, 2]


@pytest.mark.slow  # two interpreters and two model loads
def test_two_processes_write_what_one_process_writes(tmp_path):
    checkpoint = save(sharp_ftunetformer().eval(), tmp_path / "m.ckpt")
    inputs = write_inputs(tmp_path / "in", [(64, 64)] * 5)
    for index in range(3):
        write_geotiff(inputs / f"scene{index}.tif", random_bands(70, 90, seed=index))
    common = [*FAST, "--input-dir", inputs, "--checkpoints", checkpoint, "--tile-size", 64]
    common += ["--overlap", 16]
    # one thread, as torchrun gives each of its processes: CPU convolutions split over other
    # thread counts round differently, and the maps are compared exactly
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run(
        [sys.executable, str(REPO_ROOT / "ensemble_inference.py"), *map(str, common),
         "--output-dir", str(tmp_path / "one")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert single.returncode == 0, single.stderr[-3000:]
    sharded = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         str(REPO_ROOT / "ensemble_inference.py"), *map(str, common),
         "--output-dir", str(tmp_path / "two")],
        capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert sharded.returncode == 0, sharded.stderr[-3000:]
    # each process its own share: 3 + 2 images, 2 + 1 scenes
    assert "process 0 of 2" in sharded.stdout and "process 1 of 2" in sharded.stdout
    assert "3 images and 2 GeoTIFF scenes to predict" in sharded.stdout
    assert "2 images and 1 GeoTIFF scenes to predict" in sharded.stdout

    one, two = tmp_path / "one", tmp_path / "two"
    names = sorted(p.name for p in one.iterdir() if p.is_file())
    assert names == sorted(p.name for p in two.iterdir() if p.is_file())
    assert len(names) == 8
    for name in names:
        if name.endswith(".png"):
            assert np.array_equal(read_mask(one / name), read_mask(two / name)), name
        else:
            with rasterio.open(one / name) as a, rasterio.open(two / name) as b:
                assert np.array_equal(a.read(1), b.read(1)), name
                assert a.transform == b.transform and a.crs == b.crs
