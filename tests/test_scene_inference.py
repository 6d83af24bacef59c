"""GeoTIFF scenes through ensemble_inference.py: tile-wise windows, georeferenced COG outputs."""

import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import rasterio
import torch
from torch import nn

from geoseg.classes import PALETTE
from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.datasets.io import open_raster, read_mask
from geoseg.errors import DataError, PredictionError
from geoseg.inference import EnsemblePredictor, PredictionJob, merged_scene, predict, predict_scene
from geoseg.models import FTUNetFormer, load_model

from conftest import (
    REALDATA,
    REPO_ROOT,
    SCENE_CRS,
    SCENE_TRANSFORM,
    random_bands,
    save,
    sharp_ftunetformer,
    write_geotiff,
)

SCRIPT = str(REPO_ROOT / "ensemble_inference.py")


def tiny_net(seed: int = 0) -> FTUNetFormer:
    return sharp_ftunetformer(seed).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.ckpt"
    return save(tiny_net(), path)


# compared with float32 references: precision pinned, whatever the CPU
FAST = ["--num-workers", "0", "--scales", "1.0", "--flips", "none", "--precision", "fp32"]


def run_main(monkeypatch, capsys, *args) -> str:
    """ensemble_inference.py's main() in this process (no interpreter start); its stdout."""
    monkeypatch.syspath_prepend(str(REPO_ROOT))
    import ensemble_inference

    monkeypatch.setattr(sys, "argv", [SCRIPT, *FAST, *map(str, args)])
    ensemble_inference.main()
    return capsys.readouterr().out


def run_cli(*args):
    return subprocess.run(
        [sys.executable, SCRIPT, *FAST, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )


def leftovers(folder):
    return sorted(path.name for path in folder.rglob(".*"))


def assemble(pieces, height, width):
    """The (C, height, width) map that ``merged_scene``'s pieces make up, after checking that they
    cover every pixel exactly once in pieces of at most 64 rows."""
    covered = np.zeros((height, width), int)
    whole = None
    for top, left, merged, _ in pieces:
        _, rows, columns = merged.shape
        assert rows <= 64
        if whole is None:
            whole = torch.full((merged.shape[0], height, width), float("nan"))
        whole[:, top : top + rows, left : left + columns] = merged
        covered[top : top + rows, left : left + columns] += 1
    assert (covered == 1).all()
    return whole


def test_pieces_equal_the_whole_image_sliding_window(tmp_path, checkpoint):
    bands = random_bands(300, 260)
    source = write_geotiff(tmp_path / "scene.tif", bands)
    predictor = EnsemblePredictor([load_model(checkpoint)], precision="fp32")
    image = torch.from_numpy(bands)[None].float()
    with open_raster(source) as dataset:
        pieces = list(merged_scene(predictor, source, dataset, tile_size=128, overlap=32))
        # One tile per batch, as the whole image is predicted with tiles_per_batch=1: the networks
        # see the same batches, so only the order of sums could differ, and it does not.
        one_by_one = list(
            merged_scene(predictor, source, dataset, tile_size=128, overlap=32, tiles_per_batch=1)
        )
    assert all(valid is None for *_, valid in pieces)
    expected = predictor.merged_tiled(image, 128, 32)[0]
    # Batches of other sizes run other CPU convolution kernels, whose rounding differs (about 1e-6
    # relative); this random network's large activations carry that to about 1e-2 in logits of
    # magnitude 6. The exact comparison is the one tile per batch below.
    torch.testing.assert_close(assemble(pieces, 300, 260), expected, rtol=0, atol=0.05)
    assert max(merged.shape[2] for _, _, merged, _ in one_by_one) <= 128  # never the whole width
    assert torch.equal(
        assemble(one_by_one, 300, 260), predictor.merged_tiled(image, 128, 32, tiles_per_batch=1)[0]
    )

    job = PredictionJob(
        tmp_path / "out",
        tile_size=128,
        overlap=32,
        save_confidence=True,
        confidence_bits=16,
        batch_size=1,  # the batches of merged_tiled below: the same convolution kernels
    )
    predict_scene(predictor, source, job)
    confidence, output = job.outputs(source)
    merged = predictor.merged_tiled(torch.from_numpy(bands)[None].float(), 128, 32, 1)
    top_prob, pred = merged.softmax(dim=1).max(dim=1)
    with rasterio.open(output) as dataset:
        assert dataset.nodata is None  # the input declares no nodata
        classes = dataset.read(1)
    assert len(np.unique(classes)) >= 3
    assert np.mean(classes == pred[0].numpy()) > 0.999  # argmax ties aside
    with rasterio.open(confidence) as dataset:
        assert dataset.dtypes[0] == "uint16" and dataset.crs == SCENE_CRS
        levels = dataset.read(1).astype(np.int64)
    assert np.abs(levels - (top_prob[0] * 65535).round().numpy()).max() <= 1
    assert leftovers(tmp_path / "out") == []


def test_openearthmap_scenes_keep_georeferencing_and_match_the_png_path(
    tmp_path, checkpoint, monkeypatch, capsys
):
    images = REALDATA / "openearthmap_samples" / "images"
    if not images.is_dir():
        pytest.skip(f"{images} not present")
    tiles = ["--tile-size", 512, "--overlap", 64, "--checkpoints", checkpoint]
    run_main(
        monkeypatch, capsys, "--input-dir", images, "--output-dir", tmp_path / "scenes", *tiles
    )
    pngs = tmp_path / "pngs"
    pngs.mkdir()
    sources = sorted(images.glob("*.tif"))
    assert sources
    for source in sources:
        cv2.imwrite(str(pngs / f"{source.stem}.png"), cv2.imread(str(source)))
    run_main(monkeypatch, capsys, "--input-dir", pngs, "--output-dir", tmp_path / "png_out", *tiles)
    for source in sources:
        with rasterio.open(source) as src, rasterio.open(tmp_path / "scenes" / source.name) as out:
            assert out.crs == src.crs and out.transform == src.transform
            assert (out.width, out.height, out.count, out.dtypes) == (
                src.width,
                src.height,
                1,
                ("uint8",),
            )
            colormap = out.colormap(1)
            assert [colormap[index][:3] for index in range(len(PALETTE))] == list(PALETTE)
            assert out.block_shapes == [(512, 512)] and out.compression.name == "deflate"
            assert out.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
            assert out.overviews(1) == [2]
            classes = out.read(1)
        expected = read_mask(tmp_path / "png_out" / f"{source.stem}.png")
        assert len(np.unique(expected)) >= 2
        # the two paths batch the windows differently, and CPU convolution kernels round
        # differently by batch size: classes agree but where two logits are within rounding
        agreement = np.mean(classes == expected)
        assert agreement > 0.999, (source.name, agreement)
    assert leftovers(tmp_path / "scenes") == []


def test_input_nodata_becomes_output_nodata_exactly_there(
    tmp_path, checkpoint, monkeypatch, capsys
):
    bands = random_bands(150, 170, seed=1, low=1)  # no pixel is 0 by chance
    bands[:, 40:90, 60:130] = 0
    source = write_geotiff(tmp_path / "in" / "holes.tif", bands, nodata=0)
    run_main(
        monkeypatch, capsys, "--input-dir", tmp_path / "in", "--output-dir", tmp_path / "out",
        "--checkpoints", checkpoint, "--tile-size", 64, "--overlap", 16, "--save-confidence",
    )  # fmt: skip
    hole = np.zeros((150, 170), bool)
    hole[40:90, 60:130] = True
    with rasterio.open(tmp_path / "out" / "holes.tif") as out:
        assert out.nodata == IGNORE_INDEX
        classes = out.read(1)
        assert np.array_equal(out.dataset_mask() == 0, hole)
    assert np.array_equal(classes == IGNORE_INDEX, hole)
    assert classes[~hole].max() < len(CLASSES)
    with rasterio.open(tmp_path / "out" / "confidence" / "holes.tif") as out:
        assert out.nodata == 0 and out.transform == SCENE_TRANSFORM
        confidence = out.read(1)
    assert np.array_equal(confidence == 0, hole)
    assert source.is_file()


def test_skip_existing_leaves_outputs_alone_and_bad_bands_are_one_error_line(
    tmp_path, checkpoint, monkeypatch, capsys
):
    write_geotiff(tmp_path / "in" / "small.tif", random_bands(70, 90, seed=2))
    args = ["--input-dir", tmp_path / "in", "--output-dir", tmp_path / "out"]
    args += ["--checkpoints", checkpoint, "--tile-size", 64, "--overlap", 8]
    run_main(monkeypatch, capsys, *args)
    output = tmp_path / "out" / "small.tif"
    before = output.stat().st_mtime_ns
    assert "0 GeoTIFF scenes to predict" in run_main(monkeypatch, capsys, *args, "--skip-existing")
    assert output.stat().st_mtime_ns == before
    assert leftovers(tmp_path / "out") == []

    bad = tmp_path / "bad"
    write_geotiff(bad / "five.tif", np.zeros((5, 20, 20), np.uint8))
    result = run_cli(
        "--input-dir", bad, "--output-dir", tmp_path / "bad_out", "--checkpoints", checkpoint,
    )  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and "five.tif" in lines[-1]
    assert "5 bands" in lines[-1] and "Traceback" not in result.stderr
    assert not (tmp_path / "bad_out" / "five.tif").exists()
    assert leftovers(tmp_path / "bad_out") == []
    with pytest.raises(DataError, match="5 bands"):
        predict_scene(
            EnsemblePredictor([load_model(checkpoint)], precision="fp32"),
            bad / "five.tif",
            PredictionJob(tmp_path),
        )


def test_scenes_are_all_checked_before_any_is_predicted(tmp_path, checkpoint):
    good = write_geotiff(tmp_path / "in" / "good.tif", random_bands(40, 50, seed=3))
    bad = write_geotiff(tmp_path / "in" / "five.tif", np.zeros((5, 20, 20), np.uint8))
    output_dir = tmp_path / "out"
    predictor = EnsemblePredictor([load_model(checkpoint)], precision="fp32")  # an RGB model
    with pytest.raises(DataError, match="five.tif.*5 bands"):
        predict(predictor, [good, bad], PredictionJob(output_dir, tile_size=32, overlap=8))
    assert not output_dir.exists() or list(output_dir.rglob("*")) == []


class InfNet(nn.Module):
    """Logits 0, but +inf at pixels that are 0 in the first band (as bf16 overflow gives)."""

    def forward(self, x):
        return torch.where(x[:, :1] == 0, float("inf"), 0.0).expand(-1, len(CLASSES), -1, -1)


def test_a_non_finite_window_stops_the_scene_naming_it_and_writes_nothing(tmp_path):
    bands = random_bands(48, 48, low=1)
    bands[:, 40, 40] = 0  # only the tile at row 16, column 16 holds it
    source = write_geotiff(tmp_path / "scene.tif", bands)
    predictor = EnsemblePredictor([InfNet()], precision="fp32")
    out = tmp_path / "out"
    with pytest.raises(PredictionError) as error:
        job = PredictionJob(out, tile_size=32, overlap=8, batch_size=1, save_confidence=True)
        predict(predictor, [source], job)
    assert str(error.value).startswith(
        f"{source}: window at row 16, column 16 (32 x 32): the models' merged output holds NaN "
        "or inf (precision fp32;"
    )
    assert not [p for p in out.rglob("*") if p.is_file()]


def outputs_of(folder):
    """{relative path: bytes} of the finished files under ``folder``."""
    return {
        str(path.relative_to(folder)): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.name.startswith(".")
    }


@pytest.mark.slow  # three script runs
def test_two_runs_into_one_folder_write_what_one_run_writes(tmp_path, checkpoint):
    """A requeued job overlapping its predecessor: two runs on the same scenes and tiles, into one
    folder, at once."""
    inputs = tmp_path / "in"
    for index in range(3):
        write_geotiff(inputs / f"scene_{index}.tif", random_bands(384, 384, seed=10 + index))
    for index in range(2):
        tile = random_bands(64, 80, seed=20 + index).transpose(1, 2, 0)
        cv2.imwrite(str(inputs / f"tile_{index}.png"), np.ascontiguousarray(tile))
    args = [*FAST, "--checkpoints", checkpoint, "--tile-size", 128, "--overlap", 16]
    args = [sys.executable, SCRIPT, *map(str, [*args, "--save-probs", "--input-dir", inputs])]
    shared = tmp_path / "shared"
    runs = [
        subprocess.Popen(
            [*args, "--skip-existing", "--output-dir", str(shared)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for run in runs:
        _, stderr = run.communicate(timeout=300)
        assert run.returncode == 0, stderr[-2000:]
    single = subprocess.run(
        [*args, "--output-dir", str(tmp_path / "single")], capture_output=True, text=True
    )
    assert single.returncode == 0, single.stderr[-2000:]
    expected = outputs_of(tmp_path / "single")
    assert len(expected) == 10  # 3 scenes and 2 tiles, each a map and a confidence
    written = outputs_of(shared)
    assert written.keys() == expected.keys()
    for name, data in expected.items():
        assert written[name] == data, f"{name} differs from the single run's"
    assert leftovers(shared) == []


def test_skip_existing_redoes_incomplete_and_outdated_outputs(
    tmp_path, checkpoint, monkeypatch, capsys
):
    inputs = tmp_path / "in"
    for name in ("zeros", "truncated", "kept", "replaced"):
        write_geotiff(inputs / f"{name}.tif", random_bands(70, 90, seed=len(name)))
    for index in range(2):
        tile = random_bands(40, 50, seed=30 + index).transpose(1, 2, 0)
        cv2.imwrite(str(inputs / f"tile_{index}.png"), np.ascontiguousarray(tile))
    args = ["--checkpoints", checkpoint, "--tile-size", 64, "--overlap", 8, "--save-probs"]
    out = tmp_path / "out"
    run_main(monkeypatch, capsys, "--input-dir", inputs, "--output-dir", out, *args)
    before = outputs_of(out)
    kept = {name: (out / name).stat().st_mtime_ns for name in ("kept.tif", "tile_1.png")}

    # what a lost race left: a whole map of zeros with a valid georeference
    with rasterio.open(out / "zeros.tif") as dataset:
        profile = dataset.profile
    with rasterio.open(out / "zeros.tif", "w", **profile) as dataset:
        dataset.write(np.zeros((1, 70, 90), np.uint8))
    # a copy cut short, a PNG cut short
    for name in ("confidence/truncated.tif", "tile_0.png"):
        (out / name).write_bytes(before[name][: len(before[name]) // 2])
    # an input replaced under the same name
    write_geotiff(inputs / "replaced.tif", random_bands(70, 90, seed=99))

    printed = run_main(
        monkeypatch, capsys, "--input-dir", inputs, "--output-dir", out, *args, "--skip-existing"
    )
    assert "1 images and 3 GeoTIFF scenes to predict" in printed
    after = outputs_of(out)
    for name in ("zeros.tif", "truncated.tif", "confidence/truncated.tif", "tile_0.png"):
        assert after[name] == before[name], name
    assert after["replaced.tif"] != before["replaced.tif"]
    fresh = tmp_path / "fresh"
    fresh_inputs = tmp_path / "fresh_in"
    fresh_inputs.mkdir()
    os.link(inputs / "replaced.tif", fresh_inputs / "replaced.tif")  # same file, same record
    run_main(monkeypatch, capsys, "--input-dir", fresh_inputs, "--output-dir", fresh, *args)
    assert after["replaced.tif"] == outputs_of(fresh)["replaced.tif"]
    for name, mtime in kept.items():
        assert (out / name).stat().st_mtime_ns == mtime, f"{name} was redone"
    assert leftovers(out) == []
