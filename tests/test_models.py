"""Tests for geoseg.models: tiny FTUNetFormer / UNetFormer on CPU, no downloads."""

from __future__ import annotations

import inspect
import json
import re

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from geoseg.models import MODEL_REGISTRY
from geoseg.models.common import pad_to_multiple
from geoseg.models.decoder import GlobalLocalAttention, WeightedFusion
from geoseg.models.encoder_decoder import EncoderDecoder, EncoderDecoderArguments
from geoseg.models.record import taken_arguments

from conftest import TINY_SWIN, TINY_SWIN_KWARGS, tiny_ftunetformer, tiny_unetformer

NUM_CLASSES = 6


BUILDERS = [tiny_ftunetformer, tiny_unetformer]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("build", BUILDERS)
@pytest.mark.parametrize("size", [(100, 150), (64, 96), (17, 9)])
def test_output_shapes(build, size: tuple[int, int]) -> None:
    net = build(aux_head=True)
    x = torch.randn(2, 3, *size)

    net.train()
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == aux.shape == (2, NUM_CLASSES, *size)
    assert torch.isfinite(logits).all() and torch.isfinite(aux).all()
    assert isinstance(net(x), torch.Tensor)  # forward returns the logits alone, also in training

    net.eval()
    with torch.no_grad():
        logits = net(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, NUM_CLASSES, *size)


@pytest.mark.parametrize("build", BUILDERS)
def test_no_aux_head_gives_no_aux_logits(build) -> None:
    net = build(aux_head=False).train()
    assert net.decoder.aux_head is None and not net.has_aux_head
    logits, aux = net.forward_with_aux(torch.randn(2, 3, 64, 96))
    assert aux is None
    assert logits.shape == (2, NUM_CLASSES, 64, 96)


@pytest.mark.parametrize("build", BUILDERS)
def test_network_applies_its_own_normalization(build) -> None:
    normalization = {"mean": [10.0, 20.0, 30.0], "std": [2.0, 4.0, 8.0]}
    net = build(normalization=normalization).eval()
    plain = build(normalization=None)
    plain.load_state_dict(net.state_dict())  # the statistics are arguments, not weights
    plain.eval()
    x = torch.rand(1, 3, 40, 56) * 255
    mean = torch.tensor(normalization["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(normalization["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(net(x), plain((x - mean) / std))
    assert net.init_args["normalization"] == normalization
    with pytest.raises(ValueError, match="std > 0"):
        build(normalization={"mean": [0, 0, 0], "std": [1, 0, 1]})


@pytest.mark.parametrize("build", BUILDERS)
def test_batch_equals_single_images(build) -> None:
    net = build().eval()
    x = torch.randn(2, 3, 100, 150)
    with torch.no_grad():
        batch = net(x)
        singles = torch.cat([net(x[:1]), net(x[1:])])
    torch.testing.assert_close(batch, singles, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("build", BUILDERS)
def test_pad_and_crop_are_exact(build) -> None:
    # a 100x150 input is reflect-padded to 128x160 inside; doing it by hand must change nothing
    net = build().eval()
    x = torch.randn(1, 3, 100, 150)
    padded = F.pad(x, (0, 10, 0, 28), mode="reflect")
    with torch.no_grad():
        direct = net(x)
        by_hand = net(padded)[..., :100, :150]
    torch.testing.assert_close(direct, by_hand, rtol=0, atol=1e-6)


def test_pad_to_multiple() -> None:
    x = torch.arange(6.0).view(1, 1, 2, 3)
    out = pad_to_multiple(x, 4)
    assert out.shape == (1, 1, 4, 4)
    torch.testing.assert_close(out[..., :2, :3], x)
    # width 3 -> 4 reflects (pad 1 < 3); height 2 -> 4 cannot reflect (pad 2 >= 2): replicated
    torch.testing.assert_close(out[0, 0, :2, 3], torch.tensor([1.0, 4.0]))
    torch.testing.assert_close(out[0, 0, 2], out[0, 0, 1])
    torch.testing.assert_close(out[0, 0, 3], out[0, 0, 1])
    assert pad_to_multiple(x, 1) is x


def test_global_local_attention_any_size_and_relative_bias() -> None:
    attn = GlobalLocalAttention(16, num_heads=4, window_size=4).eval()
    with torch.no_grad():
        assert attn(torch.randn(2, 16, 5, 7)).shape == (2, 16, 5, 7)
    bias = attn.relative_position_bias()
    assert bias.shape == (4, 16, 16)
    # every token sees itself at relative offset (0, 0): the table's centre row, per head
    centre = attn.relative_position_bias_table[(2 * 4 - 1) * 3 + 3]
    torch.testing.assert_close(bias.diagonal(dim1=1, dim2=2), centre[:, None].expand(4, 16))


@pytest.mark.parametrize("build", BUILDERS)
def test_init_args_rebuild(build) -> None:
    net = build().eval()
    args = net.init_args
    assert json.loads(json.dumps(args)) == args
    assert args["pretrained"] is False
    assert MODEL_REGISTRY[type(net).__name__] is type(net)

    rebuilt = type(net)(**args).eval()
    sd, sd2 = net.state_dict(), rebuilt.state_dict()
    assert list(sd) == list(sd2)
    assert all(sd[k].shape == sd2[k].shape for k in sd)

    rebuilt.load_state_dict(sd)
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), net(x), rtol=0, atol=0)


def test_init_args_are_plain_values() -> None:
    args = tiny_ftunetformer().init_args
    assert args["backbone_kwargs"] == {
        "embed_dim": 16,
        "depths": [1, 1, 1, 1],
        "num_heads": [1] * 4,
    }
    assert args == {
        "num_classes": 6,
        "backbone": TINY_SWIN,
        "pretrained": False,
        "backbone_kwargs": args["backbone_kwargs"],
        "decode_channels": 16,
        "window_size": 4,
        "num_heads": 16,  # the published FT-UNetFormer's defaults fill what is left out
        "dropout": 0.2,
        "aux_head": False,
        "normalization": {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]},
    }


def test_networks_take_the_shared_arguments_once_and_the_record_reads_them() -> None:
    # EncoderDecoderArguments declares what EncoderDecoder.__init__ takes; the families take it as
    # **base, and the record's check of unknown arguments reads it from there
    shared = inspect.signature(EncoderDecoder).parameters.values()
    base = [p.name for p in shared if p.kind is p.KEYWORD_ONLY]
    assert list(EncoderDecoderArguments.__annotations__) == base
    for cls in MODEL_REGISTRY.values():
        parameters = inspect.signature(cls).parameters.values()
        own = [p.name for p in parameters if p.kind is p.KEYWORD_ONLY]
        assert not set(own) & set(base), cls
        assert taken_arguments(cls) == own + base, cls


def test_local_weights_file_swin(tmp_path) -> None:
    full = timm.create_model(TINY_SWIN, pretrained=False, **TINY_SWIN_KWARGS)
    path = tmp_path / "swin_tiny.pth"
    torch.save(full.state_dict(), path)

    net = tiny_ftunetformer(pretrained=str(path))
    saved = full.state_dict()
    loaded = net.backbone.state_dict()
    compared = 0
    for key, value in loaded.items():
        if key.startswith("output_norms."):  # timm's classifier has none: they start fresh
            continue
        # timm merges patches at the start of stage i + 1, the published Swin at the end of i
        source = re.sub(
            r"^layers\.(\d)\.downsample", lambda m: f"layers.{int(m[1]) + 1}.downsample", key
        )
        assert torch.equal(value, saved[source]), key
        compared += 1
    assert compared == len(saved) - 4  # all but timm's final norm and classifier
    assert net.init_args["pretrained"] is False


def test_local_weights_file_resnet_safetensors(tmp_path) -> None:
    full = timm.create_model("resnet18", pretrained=False)
    path = tmp_path / "resnet18.safetensors"
    save_file(full.state_dict(), str(path))

    net = tiny_unetformer(pretrained=str(path))
    saved = full.state_dict()
    for key, value in net.backbone.state_dict().items():
        assert torch.equal(value, saved[key]), key


def test_missing_weights_file_names_path(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "backbone.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(missing))):
        tiny_unetformer(pretrained=str(missing))


@pytest.mark.parametrize(
    ("build", "first_layer"),
    [(tiny_ftunetformer, "patch_embed.proj.weight"), (tiny_unetformer, "conv1.weight")],
)
def test_gradients_reach_backbone_and_fusion_weights(build, first_layer: str) -> None:
    net = build(aux_head=True).train()
    logits, aux = net.forward_with_aux(torch.randn(2, 3, 64, 64))
    (logits.square().mean() + aux.square().mean()).backward()

    grad = net.backbone.get_parameter(first_layer).grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    fusions = [net.decoder.fuse3, net.decoder.fuse2, net.decoder.refine.fuse]
    for fusion in fusions:
        assert fusion.weights.grad is not None and fusion.weights.grad.abs().sum() > 0
    table = net.decoder.block4.attn.relative_position_bias_table
    assert table.grad is not None and table.grad.abs().sum() > 0


def test_weighted_fusion_weights_are_normalised() -> None:
    fusion = WeightedFusion(skip_channels=2, channels=2)
    torch.testing.assert_close(fusion.fusion_weights(), torch.tensor([0.5, 0.5]))
    with torch.no_grad():
        fusion.weights.copy_(torch.tensor([1.0, 3.0]))
    torch.testing.assert_close(fusion.fusion_weights(), torch.tensor([0.25, 0.75]))
    with torch.no_grad():
        fusion.weights.copy_(torch.tensor([-2.0, 5.0]))  # negative weights are clipped to 0
    torch.testing.assert_close(fusion.fusion_weights(), torch.tensor([0.0, 1.0]))


def test_weighted_fusion_mix_on_hand_made_inputs() -> None:
    fusion = WeightedFusion(skip_channels=2, channels=2)
    with torch.no_grad():
        fusion.skip_proj[0].weight.copy_(torch.eye(2).view(2, 2, 1, 1))
        fusion.weights.copy_(torch.tensor([1.0, 3.0]))
    x = torch.full((1, 2, 2, 3), 4.0)  # constant, so the x2 bilinear upsampling keeps 4
    skip = torch.full((1, 2, 4, 6), 8.0)
    mixed = fusion.mix(x, skip)
    assert mixed.shape == (1, 2, 4, 6)
    torch.testing.assert_close(mixed, torch.full_like(mixed, 0.25 * 8.0 + 0.75 * 4.0))
    assert fusion(x, skip).shape == (1, 2, 4, 6)
