"""What makes the stages faster keeps what they compute: feature layouts, bf16 inference where the
CPU has it, the allocator setting, and a decoder that compiles as one graph."""

import os
import subprocess
import sys

import pytest
import torch

from geoseg import hardware
from geoseg.errors import GeoSegError
from geoseg.inference import EnsemblePredictor, autocast_dtype, parse_flips, parse_scales
from geoseg.inference import tta as tta_module

from conftest import REPO_ROOT, save, tiny_ftunetformer


def images(batch: int = 2, size: int = 64, seed: int = 0) -> torch.Tensor:
    return 255 * torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# --- feature layout ------------------------------------------------------------------------------


def test_swin_features_reach_the_decoder_as_contiguous_nchw_on_a_cpu():
    net = tiny_ftunetformer(seed=0).eval()
    with torch.no_grad():
        features = net.features(net.input_normalization(images()))
    assert [f.shape[1] for f in features] == [16, 32, 64, 128]
    assert all(f.is_contiguous() for f in features)


def test_the_feature_layout_changes_no_value():
    net = tiny_ftunetformer(seed=0).train()
    x = images(size=72)  # not a multiple of 32: padded, and windows padded inside
    logits = {}
    grads = {}
    for layout in (torch.contiguous_format, torch.channels_last):
        net.feature_layout = layout
        net.zero_grad(set_to_none=True)
        torch.manual_seed(0)  # the same dropout and drop-path draws
        out = net(x)
        out.square().mean().backward()
        logits[layout] = out.detach()
        grads[layout] = net.decoder.pre_conv[0].weight.grad.clone()
    torch.testing.assert_close(logits[torch.channels_last], logits[torch.contiguous_format])
    torch.testing.assert_close(grads[torch.channels_last], grads[torch.contiguous_format])


# --- bf16 inference ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flags, native",
    [
        ({"avx2", "amx_bf16", "amx_tile"}, True),
        ({"avx512f", "avx512_bf16"}, True),
        ({"avx512f", "avx512bw", "avx2"}, False),  # AVX-512 without BF16: emulated
        (set(), False),
    ],
)
def test_native_bf16_is_amx_or_avx512_bf16(flags, native):
    assert hardware.native_bf16(frozenset(flags)) is native


@pytest.mark.parametrize("value, native", [("1", True), ("0", False)])
def test_native_bf16_is_overridden_by_the_environment(monkeypatch, value, native):
    opposite = frozenset() if native else frozenset({"avx512_bf16"})  # the CPU says otherwise
    monkeypatch.setattr(hardware, "cpu_flags", lambda: opposite)
    monkeypatch.setenv("GEOSEG_NATIVE_BF16", value)
    assert hardware.native_bf16() is native
    monkeypatch.setenv("GEOSEG_NATIVE_BF16", "yes")
    with pytest.raises(GeoSegError, match="GEOSEG_NATIVE_BF16 must be 0 or 1, got 'yes'"):
        hardware.native_bf16()


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native):
    monkeypatch.setattr(tta_module, "native_bf16", lambda: native)
    cpu = torch.device("cpu")
    assert autocast_dtype(cpu, "auto") == (torch.bfloat16 if native else None)
    assert autocast_dtype(cpu, "bf16") == torch.bfloat16  # forced either way
    assert autocast_dtype(cpu, "fp32") is None
    predictor = EnsemblePredictor([tiny_ftunetformer(seed=0)])
    assert predictor.precision == ("bf16" if native else "fp32")
    with pytest.raises(ValueError, match="precision must be one of"):
        autocast_dtype(cpu, "fp16")


def test_bf16_merges_in_float32_and_keeps_almost_every_class():
    models = [tiny_ftunetformer(seed=0), tiny_ftunetformer(seed=1)]
    tta = dict(scales=(0.75, 1.0), flips=("none", "h"))
    fp32 = EnsemblePredictor(models, precision="fp32", **tta)
    bf16 = EnsemblePredictor(models, precision="bf16", **tta)
    x = images(size=96)
    merged_fp32, merged_bf16 = fp32.merged(x), bf16.merged(x)
    assert merged_bf16.dtype == torch.float32  # the networks' bf16 logits are merged in float32
    assert all(p.dtype == torch.float32 for m in models for p in m.parameters())
    difference = (merged_bf16 - merged_fp32).abs().max().item()
    assert 0 < difference < 0.05 * merged_fp32.abs().max().item()  # bf16 did run, and closely
    pred_fp32, confidence = fp32.predict(x)
    pred_bf16, _ = bf16.predict(x)
    assert confidence.dtype == torch.float32
    agreement = (pred_fp32 == pred_bf16).float().mean().item()
    assert agreement > 0.98, agreement


@pytest.mark.parametrize("native, precision", [("1", "bf16"), ("0", "fp32")])
def test_auto_precision_in_the_script_follows_the_documented_override(tmp_path, native, precision):
    """Both branches of --precision auto run in a subprocess on any CPU; bf16 predicts too."""
    import cv2

    checkpoint = tmp_path / "m.ckpt"
    save(tiny_ftunetformer(seed=0).eval(), checkpoint)
    (tmp_path / "in").mkdir()
    cv2.imwrite(
        str(tmp_path / "in" / "a.png"),
        images(size=64)[0].permute(1, 2, 0).byte().contiguous().numpy(),
    )
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "ensemble_inference.py"), "--num-workers", "0",
         "--input-dir", str(tmp_path / "in"), "--output-dir", str(tmp_path / "out"),
         "--checkpoints", str(checkpoint), "--scales", "1.0", "--flips", "none"],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "GEOSEG_NATIVE_BF16": native},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"on cpu in {precision};" in result.stdout
    assert cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED).shape == (64, 64)


@pytest.mark.parametrize(
    "parse, text, repeated",
    [(parse_scales, "0.75,1,1.0", "1.0"), (parse_flips, "none,h,h", "h")],
)
def test_a_repeated_scale_or_flip_is_refused_not_computed_twice(parse, text, repeated):
    with pytest.raises(ValueError, match=rf"{repeated} given more than once"):
        parse(text)
    assert parse("0.75,1.0,1.25" if parse is parse_scales else "none,h,v")  # distinct: accepted


# --- allocator -----------------------------------------------------------------------------------


def _keep_in_fresh_process(env: dict) -> str:
    code = "from geoseg.hardware import keep_freed_memory; print(keep_freed_memory())"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO_ROOT
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.skipif(sys.platform != "linux", reason="glibc's allocator")
def test_freed_memory_is_kept_unless_the_environment_chose_the_allocator():
    clean = {k: v for k, v in os.environ.items() if k not in hardware._ALLOCATOR_VARIABLES}
    clean.pop("GEOSEG_KEEP_FREED_MEMORY", None)
    assert _keep_in_fresh_process(clean) == "True"
    assert _keep_in_fresh_process({**clean, "GEOSEG_KEEP_FREED_MEMORY": "0"}) == "False"
    assert _keep_in_fresh_process({**clean, "MALLOC_MMAP_MAX_": "65536"}) == "False"


# --- torch.compile -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["train", "eval"])  # the student, the KD teacher
def test_the_decoder_compiles_without_graph_breaks(mode):
    net = tiny_ftunetformer(seed=0).train(mode == "train")
    with torch.no_grad():
        features = net.features(net.input_normalization(images()))
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(net.decoder)(features)
    torch._dynamo.reset()
    assert explanation.graph_break_count == 0, explanation.break_reasons
    assert explanation.graph_count == 1


def test_the_whole_student_compiles_as_one_graph():
    net = tiny_ftunetformer(seed=0).train()
    torch._dynamo.reset()
    explanation = torch._dynamo.explain(net)(images(size=72))  # padded input, padded windows
    torch._dynamo.reset()
    assert (explanation.graph_count, explanation.graph_break_count) == (1, 0)
