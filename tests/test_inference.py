"""ensemble_inference.py: TTA identities, un-flipping, sliding windows, merges, outputs, safety."""

import json
import os
import runpy
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from geoseg.datasets import CLASSES
from geoseg.datasets.io import read_mask
from geoseg.inference import EnsemblePredictor
from geoseg.models import MODEL_REGISTRY, load_model

from conftest import (
    REPO_ROOT,
    random_image,
    save,
    sharp_ftunetformer,
    tiny_unetformer,
    write_inputs,
)

SCRIPT = str(REPO_ROOT / "ensemble_inference.py")
# these tests compare with float32 hand computations: precision pinned, whatever the CPU
FP32 = ["--precision", "fp32"]
# one scale, no flips: the plain prediction of each member
NO_TTA = ["--scales", "1.0", "--flips", "none"]


class PointwiseNet(nn.Module):
    """A 1x1 convolution of the image scaled to [0, 1] (networks normalise their own input):
    exactly translation- and flip-equivariant."""

    def __init__(self, num_classes: int = 6, seed: int = 0):
        super().__init__()
        self.init_args = {"num_classes": num_classes, "seed": seed}
        self.conv = nn.Conv2d(3, num_classes, 1)
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=generator))

    def forward(self, x):
        return self.conv(x / 255)


class RampNet(PointwiseNet):
    """Pointwise plus a bias that grows from left to right: not flip-equivariant."""

    def forward(self, x):
        ramp = torch.linspace(0, 3, x.shape[-1], device=x.device)
        return self.conv(x / 255) + ramp * torch.arange(
            self.conv.out_channels, device=x.device
        ).view(-1, 1, 1)


class ConstantNet(nn.Module):
    """The same logits at every pixel."""

    def __init__(self, logits: list[float]):
        super().__init__()
        self.init_args = {"logits": logits}
        self.logits = nn.Parameter(torch.tensor(logits))

    def forward(self, x):
        return self.logits.view(1, -1, 1, 1).expand(x.shape[0], -1, *x.shape[-2:])


class InfNet(PointwiseNet):
    """Pointwise, but +inf logits at pixels that are 0 in the first band (as bf16 overflow gives)."""

    def forward(self, x):
        return self.conv(x / 255) + torch.where(x[:, :1] == 0, float("inf"), 0.0)


@pytest.fixture(autouse=True)
def test_models(monkeypatch):
    for cls in (PointwiseNet, RampNet, ConstantNet, InfNet):
        monkeypatch.setitem(MODEL_REGISTRY, cls.__name__, cls)


def run_cli(*args, check=True, cwd=None):
    result = subprocess.run(
        [sys.executable, SCRIPT, "--num-workers", "0", *FP32, *map(str, args)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if check:
        assert result.returncode == 0, result.stderr[-3000:]
    return result


def plain_logits(net, image: np.ndarray) -> torch.Tensor:
    """The model's own logits for an RGB uint8 image (the model normalises its input)."""
    with torch.no_grad():
        return net(torch.from_numpy(image).permute(2, 0, 1)[None].float())


def as_batch(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(image).permute(2, 0, 1)[None].float()


def test_single_model_without_tta_equals_the_plain_argmax_at_odd_sizes(tmp_path):
    checkpoint = save(sharp_ftunetformer().eval(), tmp_path / "m.ckpt")
    inputs = write_inputs(tmp_path / "in", [(333, 517), (100, 150)])
    outside = tmp_path / "elsewhere"  # run from a folder outside the repository
    outside.mkdir()
    run_cli(
        "--input-dir", inputs, "--output-dir", tmp_path / "out", "--checkpoints", checkpoint,
        *NO_TTA, cwd=outside,
    )  # fmt: skip
    net = load_model(checkpoint)
    for index, size in enumerate([(333, 517), (100, 150)]):
        pred = read_mask(tmp_path / "out" / f"tile_{index:03d}.png")
        assert pred.shape == size
        expected = plain_logits(net, random_image(*size, index)).argmax(1)[0].numpy()
        assert len(np.unique(expected)) >= 3
        assert np.array_equal(pred, expected)


def test_full_tta_keeps_the_exact_input_size(tmp_path):
    checkpoint = save(sharp_ftunetformer().eval(), tmp_path / "m.ckpt")
    inputs = write_inputs(tmp_path / "in", [(333, 517), (37, 45)])
    run_cli(
        "--input-dir",
        inputs,
        "--output-dir",
        tmp_path / "out",
        "--checkpoint1",
        checkpoint,
        "--checkpoint2",
        checkpoint,
        "--scales",
        "0.75,1.0,1.25",
        "--save-rgb",
        "--save-probs",
    )
    for index, size in enumerate([(333, 517), (37, 45)]):
        assert read_mask(tmp_path / "out" / f"tile_{index:03d}.png").shape == size
        assert cv2.imread(str(tmp_path / "out" / "rgb" / f"tile_{index:03d}.png")).shape == (
            *size,
            3,
        )
        assert read_mask(tmp_path / "out" / "confidence" / f"tile_{index:03d}.png").shape == size


def test_flips_are_undone_exactly(tmp_path):
    net = load_model(save(RampNet(), tmp_path / "ramp.ckpt"))
    image = as_batch(random_image(20, 30))
    merged = EnsemblePredictor(
        [net], precision="fp32", flips=("none", "h", "v"), batch_flips=False
    ).merged(image)
    batched = EnsemblePredictor(
        [net], precision="fp32", flips=("none", "h", "v"), batch_flips=True
    ).merged(image)
    torch.testing.assert_close(batched, merged, rtol=0, atol=1e-5)
    with torch.no_grad():
        by_hand = (net(image) + net(image.flip(-1)).flip(-1) + net(image.flip(-2)).flip(-2)) / 3
    torch.testing.assert_close(merged, by_hand, rtol=0, atol=1e-5)
    # The ramp makes the model flip-variant: without un-flipping the result would differ.
    assert not torch.allclose(merged, net(image).detach(), atol=1e-3)


def test_symmetric_input_gives_a_symmetric_result_for_any_model(tmp_path):
    net = load_model(save(sharp_ftunetformer(seed=3).eval(), tmp_path / "m.ckpt"))
    half = random_image(64, 48, seed=4)
    symmetric = np.concatenate([half, half[:, ::-1]], axis=1)  # 64 x 96, mirror image about x
    merged = EnsemblePredictor([net], precision="fp32", flips=("none", "h")).merged(
        as_batch(symmetric)
    )
    # (m(x) + flip(m(flip x))) / 2 with flip x = x is symmetric whatever m is.
    assert torch.equal(merged, merged.flip(-1))


def test_sliding_window_equals_the_whole_image_for_a_pointwise_model(tmp_path):
    net = load_model(save(PointwiseNet(seed=2), tmp_path / "p.ckpt"))
    predictor = EnsemblePredictor([net], precision="fp32", scales=(1.0,), flips=("none", "h"))
    image = as_batch(random_image(150, 230, seed=5))
    whole = predictor.merged(image)
    tiled = predictor.merged_tiled(image, tile_size=64, overlap=16)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-5)


@pytest.mark.slow  # end-to-end CLI runs
def test_sliding_window_through_the_cli_on_a_real_model(tmp_path):
    checkpoint = save(sharp_ftunetformer(seed=1).eval(), tmp_path / "m.ckpt")
    inputs = write_inputs(tmp_path / "in", [(150, 230)])
    common = ["--input-dir", inputs, "--checkpoints", checkpoint, "--scales", "1.0,1.25"]
    run_cli(*common, "--output-dir", tmp_path / "tiled", "--tile-size", "64", "--overlap", "32")
    run_cli(*common, "--output-dir", tmp_path / "one_tile", "--tile-size", "256", "--overlap", "32")
    run_cli(*common, "--output-dir", tmp_path / "whole")
    tiled = read_mask(tmp_path / "tiled" / "tile_000.png")
    assert tiled.shape == (150, 230) and tiled.max() < 6
    # A tile as large as the image is the whole-image prediction, bit for bit.
    whole = read_mask(tmp_path / "whole" / "tile_000.png")
    assert np.array_equal(read_mask(tmp_path / "one_tile" / "tile_000.png"), whole)


def test_logit_and_probability_merges_differ_where_they_should(tmp_path):
    # One very confident model for class 0 and two mild ones for class 1 (two classes):
    # mean logits (10+0+0)/3 = 3.33 vs (0+2+2)/3 = 1.33 -> class 0;
    # mean probabilities (1.0 + 0.119 + 0.119)/3 = 0.41 vs 0.59 -> class 1.
    classes = ("a", "b")
    paths = [
        save(ConstantNet([10.0, 0.0]), tmp_path / "sure.ckpt", classes),
        save(ConstantNet([0.0, 2.0]), tmp_path / "mild1.ckpt", classes),
        save(ConstantNet([0.0, 2.0]), tmp_path / "mild2.ckpt", classes),
    ]
    models = [load_model(path) for path in paths]
    image = as_batch(random_image(8, 8))
    by_logits, _ = EnsemblePredictor(models, precision="fp32", merge="logits").predict(image)
    by_probs, confidence = EnsemblePredictor(models, precision="fp32", merge="probs").predict(image)
    assert (by_logits == 0).all() and (by_probs == 1).all()
    expected = (
        2 * torch.softmax(torch.tensor([0.0, 2.0]), 0)[1]
        + torch.softmax(torch.tensor([10.0, 0.0]), 0)[1]
    ) / 3
    torch.testing.assert_close(confidence, torch.full_like(confidence, expected.item()))


def test_two_architectures_mix_and_metrics_run_on_the_output(tmp_path):
    torch.manual_seed(0)
    unet = tiny_unetformer(6).eval()
    ft = sharp_ftunetformer(seed=2).eval()
    paths = [save(ft, tmp_path / "ft.ckpt"), save(unet, tmp_path / "unet.ckpt")]
    sizes = [(64, 80), (64, 80), (50, 70)]
    inputs = write_inputs(tmp_path / "in", sizes)
    run_cli(
        "--input-dir", inputs, "--output-dir", tmp_path / "out", "--checkpoints", *paths, *NO_TTA,
        "--batch-size", "3",
    )  # fmt: skip
    # the script predicts tiles of one size in one batch; on some CPUs (oneDNN on AMX) a batch
    # of two rounds differently from two batches of one, so the reference is batched alike
    for batch in ([0, 1], [2]):
        images = torch.cat([as_batch(random_image(*sizes[i], i)) for i in batch])
        with torch.no_grad():
            mean_logits = (ft(images) + unet(images)) / 2
        for row, index in enumerate(batch):
            pred = torch.from_numpy(read_mask(tmp_path / "out" / f"tile_{index:03d}.png")).long()
            expected = mean_logits[row].argmax(0)
            # Threads may change float rounding, which may flip a near-tie; elsewhere it agrees.
            chosen = mean_logits[row].gather(0, pred[None])[0]
            best = mean_logits[row].gather(0, expected[None])[0]
            assert ((pred == expected) | (best - chosen < 1e-4)).all()
            assert (pred == expected).float().mean() > 0.99
    # model_metrics.py scores the predictions against themselves: everything is right.
    gt = tmp_path / "gt"
    gt.mkdir()
    for path in (tmp_path / "out").glob("*.png"):
        cv2.imwrite(str(gt / path.name), read_mask(path))
    result = subprocess.run(
        [
            sys.executable,
            str(REPO_ROOT / "evaluation" / "model_metrics.py"),
            "--pred-dir",
            str(tmp_path / "out"),
            "--gt-dir",
            str(gt),
            "--out-dir",
            str(tmp_path / "report"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "OA" in result.stdout and "100.00" in result.stdout


def test_an_imported_geoseg_checkpoint_runs_beside_a_native_one(tmp_path):
    from geoseg.models.import_geoseg import import_geoseg_checkpoint

    geoseg = REPO_ROOT / "tests" / "data" / "geoseg" / "unetformer_geoseg.ckpt"
    imported = tmp_path / "geoseg_unetformer.ckpt"
    import_geoseg_checkpoint(geoseg, imported, arch="unetformer", backbone="test_resnet")
    native = save(sharp_ftunetformer(seed=3).eval(), tmp_path / "native.ckpt")
    sizes = [(64, 96), (50, 70)]
    inputs = write_inputs(tmp_path / "in", sizes)
    run_cli(
        "--input-dir", inputs, "--output-dir", tmp_path / "out", "--checkpoints", native, imported,
        *NO_TTA,
    )  # fmt: skip
    members = [load_model(native), load_model(imported)]
    for index, size in enumerate(sizes):
        image = random_image(*size, index)
        mean_logits = sum(plain_logits(net, image) for net in members) / 2
        pred = torch.from_numpy(read_mask(tmp_path / "out" / f"tile_{index:03d}.png")).long()
        assert (pred == mean_logits.argmax(1)[0]).float().mean() > 0.99
        # both members matter: the ensemble is neither of them alone
        for net in members:
            assert (pred != plain_logits(net, image).argmax(1)[0]).any()


@pytest.mark.slow  # one script run per bad input
def test_bad_inputs_are_clear_errors(tmp_path):
    # Subprocesses see only the project's own architectures.
    good = save(sharp_ftunetformer().eval(), tmp_path / "six.ckpt")
    two_class = tiny_unetformer(2)
    other = save(two_class.eval(), tmp_path / "two.ckpt", classes=("x", "y"))
    inputs = write_inputs(tmp_path / "in", [(16, 16)])

    def run_on(*checkpoints, output_dir=tmp_path / "out"):
        """The script on ``inputs`` with these checkpoints, whatever its exit status."""
        return run_cli(
            "--input-dir", inputs, "--output-dir", output_dir, "--checkpoints", *checkpoints,
            check=False,
        )  # fmt: skip

    result = run_on(good, tmp_path / "missing.ckpt")
    assert result.returncode == 2 and "missing.ckpt: checkpoint file not found" in result.stderr
    result = run_on(good, other)
    assert result.returncode == 2
    assert "two.ckpt predicts 2 classes" in result.stderr and "six.ckpt predicts 6" in result.stderr
    result = run_on(good, output_dir=inputs)
    assert result.returncode == 2 and "is the input folder" in result.stderr
    (inputs / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")
    result = run_on(good)
    assert result.returncode == 2 and "broken.png: unreadable" in result.stderr
    result = run_cli("--input-dir", inputs, "--checkpoints", good, "--flips", "none,x", check=False)
    assert result.returncode == 2 and "--flips" in result.stderr


@pytest.mark.slow  # end-to-end CLI runs
def test_killed_run_resumes_with_skip_existing(tmp_path):
    checkpoint = save(sharp_ftunetformer().eval(), tmp_path / "m.ckpt")
    inputs = write_inputs(tmp_path / "in", [(96, 96)] * 40)
    output = tmp_path / "out"
    args = [
        sys.executable,
        SCRIPT,
        "--num-workers",
        "0",
        "--input-dir",
        str(inputs),
        "--output-dir",
        str(output),
        "--checkpoints",
        str(checkpoint),
        "--save-rgb",
    ]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(output.glob("tile_*.png"))) < 3:
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done_before = {p.name: p.stat().st_mtime_ns for p in output.glob("tile_*.png")}
    assert 3 <= len(done_before) < 40, "the run was not interrupted mid-way"
    result = run_cli(
        "--input-dir",
        inputs,
        "--output-dir",
        output,
        "--checkpoints",
        checkpoint,
        "--save-rgb",
        "--skip-existing",
    )
    assert f"{40 - len(done_before)} images and 0 GeoTIFF scenes to predict" in result.stdout
    for index in range(40):
        mask = read_mask(output / f"tile_{index:03d}.png")  # every file complete and readable
        assert mask.shape == (96, 96)
        assert cv2.imread(str(output / "rgb" / f"tile_{index:03d}.png")).shape == (96, 96, 3)
    assert not list(output.glob(".*.tmp")) and not list((output / "rgb").glob(".*.tmp"))
    for name, mtime in done_before.items():
        assert (output / name).stat().st_mtime_ns == mtime  # finished outputs were not redone
    assert os.path.getsize(output / "tile_039.png") > 0


def test_the_installed_package_imports_from_any_folder(tmp_path):
    code = "import geoseg.inference, geoseg.models; print(geoseg.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(REPO_ROOT / "geoseg" / "__init__.py")


# --- member weights -------------------------------------------------------------------------------


def test_member_weights_make_the_merge_a_weighted_mean():
    models = [PointwiseNet(seed=seed).eval() for seed in (0, 1, 2)]
    image = as_batch(random_image(8, 10))
    logits = [plain_logits(net, random_image(8, 10)) for net in models]
    predictor = EnsemblePredictor(models, precision="fp32", weights=[1.0, 0.6, 0.4])
    assert predictor.weights == pytest.approx((0.5, 0.3, 0.2))
    w = predictor.weights
    assert torch.equal(
        predictor.merged(image), w[0] * logits[0] + w[1] * logits[1] + w[2] * logits[2]
    )
    torch.testing.assert_close(
        predictor.merged(image), 0.5 * logits[0] + 0.3 * logits[1] + 0.2 * logits[2]
    )
    # with TTA: the weighted mean over members of each member's mean over the flips
    ramps = [RampNet(seed=seed).eval() for seed in (0, 1)]
    merged = EnsemblePredictor(ramps, precision="fp32", flips=("none", "h"), weights=[1, 3]).merged(
        image
    )
    with torch.no_grad():
        per_member = [(net(image) + net(image.flip(-1)).flip(-1)) / 2 for net in ramps]
    torch.testing.assert_close(merged, 0.25 * per_member[0] + 0.75 * per_member[1])
    # and of probabilities with merge="probs"
    merged = EnsemblePredictor(models[:2], precision="fp32", merge="probs", weights=[1, 3]).merged(
        image
    )
    expected = 0.25 * logits[0].softmax(1) + 0.75 * logits[1].softmax(1)
    torch.testing.assert_close(merged, expected)


def test_no_weights_merge_as_before_and_equal_weights_agree():
    models = [PointwiseNet(seed=seed).eval() for seed in (0, 1, 2)]
    image = as_batch(random_image(8, 10))
    logits = [plain_logits(net, random_image(8, 10)) for net in models]
    # the rule of before, bit for bit: the sum over passes divided by their count
    merged = EnsemblePredictor(models, precision="fp32").merged(image)
    assert torch.equal(merged, (logits[0] + logits[1] + logits[2]) / 3)
    # two members at equal weights: halving is exact, so the maps are identical
    weighted = EnsemblePredictor(models[:2], precision="fp32", weights=[2, 2]).merged(image)
    assert torch.equal(weighted, EnsemblePredictor(models[:2], precision="fp32").merged(image))


class BrokenNet(PointwiseNet):
    def forward(self, x):
        raise AssertionError("a member of weight 0 must not run")


def test_a_member_of_weight_zero_is_not_run_and_bad_weights_are_refused():
    models = [PointwiseNet(seed=0).eval(), BrokenNet().eval()]
    image = as_batch(random_image(8, 10))
    predictor = EnsemblePredictor(models, precision="fp32", weights=[1, 0])
    assert predictor.passes == 1 and predictor.weights == (1.0,)
    assert torch.equal(predictor.merged(image), plain_logits(models[0], random_image(8, 10)))
    for weights, message in [
        ([1], "1 weights for 2 members"),
        ([1, -1], "expected finite, non-negative numbers"),
        ([1, float("nan")], "expected finite, non-negative numbers"),
        ([0, 0], "all zero"),
    ]:
        with pytest.raises(ValueError, match=message):
            EnsemblePredictor(models, weights=weights)


def run_here(monkeypatch, *args) -> None:
    """ensemble_inference.py in this process, where the test architectures are registered."""
    monkeypatch.setattr(sys, "argv", [SCRIPT, "--num-workers", "0", *FP32, *map(str, args)])
    monkeypatch.setenv("GEOSEG_KEEP_FREED_MEMORY", "0")
    runpy.run_path(SCRIPT, run_name="__main__")


def test_weights_and_selection_through_the_script(tmp_path, monkeypatch, capsys):
    nets = [PointwiseNet(seed=seed).eval() for seed in (0, 1)]
    paths = [save(net, tmp_path / f"p{seed}.ckpt") for seed, net in enumerate(nets)]
    inputs = write_inputs(tmp_path / "in", [(20, 30)])
    logits = [plain_logits(net, random_image(20, 30, 0)) for net in nets]
    no_tta = ["--scales", "1.0", "--flips", "none"]
    run_here(monkeypatch, "--input-dir", inputs, "--output-dir", tmp_path / "weighted",
             "--checkpoints", *paths, "--weights", "3,1", *no_tta)  # fmt: skip
    assert "2 models (weights 0.75, 0.25) x 1 scales" in capsys.readouterr().out
    weighted = read_mask(tmp_path / "weighted" / "tile_000.png")
    expected = (0.75 * logits[0] + 0.25 * logits[1]).argmax(1)[0].numpy()
    assert np.array_equal(weighted, expected)
    assert (expected != (logits[0] + logits[1]).argmax(1)[0].numpy()).any()  # weights matter
    # a selection file: the same members and weights, and a member of weight 0 never loaded
    selection = tmp_path / "selection.json"
    selection.write_text(
        json.dumps(
            {"checkpoints": [*map(str, paths), str(tmp_path / "missing.ckpt")],
             "weights": [0.75, 0.25, 0.0]}
        )
    )  # fmt: skip
    run_here(monkeypatch, "--input-dir", inputs, "--output-dir", tmp_path / "selected",
             "--selection", selection, *no_tta)  # fmt: skip
    assert np.array_equal(read_mask(tmp_path / "selected" / "tile_000.png"), weighted)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--weights", "1,-1"], "--weights '1,-1': expected finite, non-negative numbers"),
        (["--weights", "1"], "--weights '1': 1 weights for 2 members; expected one each"),
        (["--weights", "0,0"], "--weights '0,0': all zero"),
        (["--weights", "a,b"], "--weights 'a,b': expected comma-separated numbers"),
        (["--selection", "s.json", "--weights", "1,1"], "drop --checkpoints, --weights"),
        (["--selection", "missing.json"], "missing.json: selection file not found"),
        (["--selection", "s.json"], "s.json: no checkpoints"),
    ],
)
def test_bad_weights_are_one_line_errors(tmp_path, monkeypatch, capsys, flags, message):
    paths = [save(PointwiseNet(seed=seed), tmp_path / f"p{seed}.ckpt") for seed in (0, 1)]
    inputs = write_inputs(tmp_path / "in", [(8, 8)])
    (tmp_path / "s.json").write_text(json.dumps({"checkpoints": [], "weights": []}))
    monkeypatch.chdir(tmp_path)
    if "--weights" in flags:
        flags = ["--checkpoints", *paths, *flags]
    with pytest.raises(SystemExit) as exit_:
        run_here(monkeypatch, "--input-dir", inputs, "--output-dir", tmp_path / "out", *flags)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def poison(path, key: str):
    """Put one NaN into the weight ``key`` of the checkpoint at ``path``."""
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"][f"net.{key}"].view(-1)[0] = float("nan")
    torch.save(checkpoint, path)
    return path


@pytest.mark.slow  # one script run
def test_a_checkpoint_with_nan_weights_is_one_error_line_and_no_map(tmp_path):
    path = poison(save(sharp_ftunetformer().eval(), tmp_path / "nan.ckpt"), "decoder.head.2.weight")
    inputs = write_inputs(tmp_path / "in", [(16, 16)])
    result = run_cli(
        "--input-dir", inputs, "--output-dir", tmp_path / "out", "--checkpoints", path, check=False
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr == (
        f"error: {path}: non-finite weights (NaN or inf) in decoder.head.2.weight: the checkpoint "
        "is unusable; use an earlier one (e.g. the -best.ckpt) or retrain\n"
    )
    assert not list((tmp_path / "out").rglob("*.png"))


@pytest.mark.parametrize("tiles", [[], ["--tile-size", "8", "--overlap", "2"]])
def test_a_non_finite_output_stops_naming_the_image_and_writes_no_map(
    tmp_path, monkeypatch, capsys, tiles
):
    inputs = tmp_path / "in"
    inputs.mkdir()
    image = np.full((12, 12, 3), 128, np.uint8)
    cv2.imwrite(str(inputs / "a.png"), image)
    image[9, 10] = 0
    cv2.imwrite(str(inputs / "b.png"), image)
    path = save(InfNet(), tmp_path / "inf.ckpt")
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_:
        run_here(monkeypatch, "--input-dir", inputs, "--output-dir", out, "--checkpoints", path,
                 *tiles)  # fmt: skip
    assert exit_.value.code == 2
    err = capsys.readouterr().err  # the progress bar, then the error line
    tile = "tile at row 4, column 4 (8 x 8): " if tiles else ""
    assert "Traceback" not in err and err.splitlines()[-1] == (
        f"error: {inputs / 'b.png'}: {tile}the models' merged output holds NaN or inf (precision "
        "fp32; a model computes NaN or inf for this input; check its checkpoint); no map written"
    )
    assert err.count("error: ") == 1
    # a.png, predicted before, is complete; nothing of b.png, not even a temporary
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["a.png"]
    assert (read_mask(out / "a.png") < len(CLASSES)).all()
