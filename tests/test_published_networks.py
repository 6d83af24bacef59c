"""The published FT-UNetFormer and UNetFormer: same logits as the authors' code, GeoSeg checkpoints.

tests/data/geoseg holds tensors produced by the reference implementation (see its README): random
weights of tiny-width variants in GeoSeg's checkpoint layout, an input and the logits it gave.
"""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest
import timm
import torch

from geoseg.classes import CLASSES, IMAGENET_NORMALIZATION
from geoseg.errors import CheckpointError, ConfigError, DataError
from geoseg.models import FTUNetFormer, UNetFormer, load_model_and_spec
from geoseg.models.common import as_plain
from geoseg.models.geoseg_format import from_published_layouts, geoseg_model_arguments
from geoseg.models.import_geoseg import main as import_main
from geoseg.models.initialise import load_pretrained_weights
from geoseg.models.swin import SwinTransformer, swin_state_dict
from geoseg.models.weight_files import extract_state_dict, read_checkpoint

from conftest import REPO_ROOT, file_digest, run_python

FIXTURES = Path(__file__).parent / "data" / "geoseg"
# the reference UNetFormer of the fixture runs on timm's tiny test ResNet
UNET_BACKBONE = "test_resnet"
MODELS = {"ft_unetformer": FTUNetFormer, "unetformer": UNetFormer}


def geoseg_checkpoint(arch: str) -> Path:
    return FIXTURES / f"{arch}_geoseg.ckpt"


def reference_outputs(arch: str) -> dict:
    return torch.load(FIXTURES / f"{arch}_io.pt", weights_only=True)


def network_from_geoseg(arch: str, **overrides) -> torch.nn.Module:
    """The project's network with the fixture's weights, normalisation off as in GeoSeg's forward."""
    state = extract_state_dict(read_checkpoint(geoseg_checkpoint(arch)))
    state, _ = from_published_layouts(state, swin_backbone=arch == "ft_unetformer")
    name, kwargs = geoseg_model_arguments(state, backbone=UNET_BACKBONE)
    net = MODELS[arch](**{**kwargs, "normalization": None, **overrides})
    assert type(net).__name__ == name
    net.load_state_dict(state, strict=True)
    return net.eval()


@pytest.mark.parametrize("arch", MODELS)
def test_same_logits_as_the_reference_implementation(arch):
    expected = reference_outputs(arch)
    net = network_from_geoseg(arch)
    x = expected["input"]
    with torch.no_grad():
        features = net.backbone(x)
        logits, aux = net.forward_with_aux(x)
    if arch == "ft_unetformer":  # the Swin is this project's own code: check it on its own too
        for ours, theirs in zip(features, expected["features"], strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-5)
    if arch == "unetformer":  # GeoSeg's UNetFormer trains with its auxiliary head
        torch.testing.assert_close(aux, expected["aux_logits"], rtol=0, atol=1e-5)
    else:
        assert aux is None and not net.has_aux_head


@pytest.mark.parametrize("arch", MODELS)
def test_same_logits_as_the_reference_at_an_odd_size_and_batch_of_two(arch):
    """157 x 254: the reference lets its backbone round up to 160 x 256 and stretches the logits
    back; the same here (further from a multiple of 32 the reference fails, this pads instead)."""
    reference = torch.load(FIXTURES / "odd_size_io.pt", weights_only=True)
    x = (reference["pixels"].float() - 128) / 64
    with torch.no_grad():
        logits = network_from_geoseg(arch)(x)
    assert logits.shape == (2, 6, 157, 254)
    expected = reference[f"{arch}_logits_every_4th"]
    torch.testing.assert_close(logits[..., ::4, ::4], expected, rtol=0, atol=1e-5)


def test_inferred_arguments_are_the_published_ones():
    state, left_out = from_published_layouts(
        extract_state_dict(read_checkpoint(geoseg_checkpoint("ft_unetformer"))), swin_backbone=True
    )
    assert geoseg_model_arguments(state, backbone="unused") == (
        "FTUNetFormer",
        dict(
            num_classes=6,
            decode_channels=32,
            num_heads=16,
            window_size=8,
            aux_head=False,
            backbone_kwargs=dict(
                embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2], window_size=7
            ),
        ),
    )
    # only the derived relative position indices stay behind (8 Swin blocks, 3 decoder blocks)
    assert len(left_out) == 11 and all(k.endswith("relative_position_index") for k in left_out)


def test_published_defaults_and_decoder_size():
    net = FTUNetFormer()
    assert net.init_args["backbone"] == "swin_base_patch4_window7_224"
    assert net.backbone.channels == [128, 256, 512, 1024]
    assert not net.has_aux_head
    # the published FT-UNetFormer decoder: 9.23 M parameters
    assert sum(p.numel() for p in net.decoder.parameters()) == 9_233_462
    unet = UNetFormer(backbone="resnet18")
    assert unet.has_aux_head and unet.decoder.block4.attn.num_heads == 8


@pytest.mark.parametrize("arch", MODELS)
def test_import_command_writes_a_self_describing_checkpoint(arch, tmp_path):
    out = tmp_path / f"{arch}.ckpt"
    import_main(
        [str(geoseg_checkpoint(arch)), str(out), "--arch", arch, "--num-classes", "6"]
        + ["--backbone", UNET_BACKBONE]
    )
    net, spec = load_model_and_spec(out)
    assert spec.classes == tuple(CLASSES)
    assert spec.normalization == as_plain(IMAGENET_NORMALIZATION)
    assert spec.architecture_version == 2
    # GeoSeg normalised with ImageNet statistics on the 0-255 scale before the network; the
    # imported network does it itself, so it takes the raw image
    expected = reference_outputs(arch)
    mean = torch.tensor(IMAGENET_NORMALIZATION["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_NORMALIZATION["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        logits = net(expected["input"] * std + mean)
    torch.testing.assert_close(logits, expected["logits"], rtol=0, atol=1e-4)


def test_import_refuses_what_does_not_fit(tmp_path):
    source = geoseg_checkpoint("ft_unetformer")
    out = tmp_path / "out.ckpt"
    with pytest.raises(ConfigError, match="holds a FTUNetFormer, not --arch unetformer"):
        import_main([str(source), str(out), "--arch", "unetformer"])
    with pytest.raises(ConfigError, match="predicts 6 classes, not --num-classes 7"):
        import_main([str(source), str(out), "--num-classes", "7"])
    with pytest.raises(ConfigError, match="names 2 classes"):
        import_main([str(source), str(out), "--classes", "a,b"])
    checkpoint = torch.load(source, weights_only=True)
    checkpoint["state_dict"]["net.decoder.extra.weight"] = torch.zeros(1)
    del checkpoint["state_dict"]["net.decoder.p2.post_conv.1.bias"]
    broken = tmp_path / "broken.ckpt"
    torch.save(checkpoint, broken)
    with pytest.raises(CheckpointError) as error:
        import_main([str(broken), str(out)])
    message = str(error.value)
    assert "decoder.fuse2.post_conv.1.bias" in message and "decoder.extra.weight" in message
    assert not out.exists()


def test_import_names_the_classes_it_assumes_and_the_backbone_it_needs(tmp_path, caplog):
    out = tmp_path / "out.ckpt"
    with caplog.at_level(logging.WARNING):
        import_main([str(geoseg_checkpoint("ft_unetformer")), str(out)])
    assert "this project's class names (other, forest" in caplog.text and "--classes" in caplog.text
    with pytest.raises(CheckpointError, match=r"is its CNN not 'resnet18'\? .*--backbone"):
        import_main([str(geoseg_checkpoint("unetformer")), str(tmp_path / "unet.ckpt")])


def test_import_refuses_to_write_over_its_source(tmp_path):
    source = tmp_path / "geoseg.ckpt"
    shutil.copy(geoseg_checkpoint("ft_unetformer"), source)
    before = file_digest(source)
    done = run_python(
        "-m", "geoseg.models.import_geoseg", source, source, timeout=300, cwd=REPO_ROOT
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.splitlines() == [
        f"error: {source}: is the input {source}; refusing to write over it: choose another output"
    ]
    link = tmp_path / "link.ckpt"
    link.symlink_to(source)
    for given, output in ((source, link), (link, source)):
        with pytest.raises(DataError, match=re.escape(f"{output}: is the input {given}; refusing")):
            import_main([str(given), str(output)])
    assert file_digest(source) == before
    assert link.resolve() == source and sorted(tmp_path.iterdir()) == [source, link]


def test_a_geoseg_checkpoint_without_record_points_at_the_importer():
    with pytest.raises(CheckpointError, match=r"GeoSeg checkpoint.*geoseg\.models\.import_geoseg"):
        load_model_and_spec(geoseg_checkpoint("unetformer"))


@pytest.mark.parametrize("arch", MODELS)
def test_geoseg_checkpoint_initialises_a_network_directly(arch):
    reference = network_from_geoseg(arch)
    torch.manual_seed(1)
    fresh = type(reference)(**reference.init_args)
    report = load_pretrained_weights(fresh, geoseg_checkpoint(arch))
    assert report == {"missing": [], "unexpected": [], "mismatched": []}
    for key, value in reference.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value), key


def test_stseg_backbone_file_initialises_the_swin(tmp_path):
    """GeoSeg's stseg_base.pth: an mmsegmentation checkpoint, Swin under backbone. and heads."""
    geoseg_state = torch.load(geoseg_checkpoint("ft_unetformer"), weights_only=True)["state_dict"]
    backbone = {
        k.removeprefix("net."): v for k, v in geoseg_state.items() if k.startswith("net.backbone.")
    }
    stseg = {**backbone, "decode_head.conv_seg.weight": torch.zeros(6, 8, 1, 1)}
    path = tmp_path / "stseg_tiny.pth"
    torch.save({"meta": {}, "state_dict": stseg}, path)
    reference = network_from_geoseg("ft_unetformer")
    net = FTUNetFormer(**{**reference.init_args, "pretrained": str(path)})
    for key, value in reference.backbone.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[key], value), key
    report = load_pretrained_weights(FTUNetFormer(**reference.init_args), path)
    assert report["unexpected"] == [] and report["mismatched"] == []
    assert report["missing"] and all(k.startswith("decoder.") for k in report["missing"])


def test_timm_swin_weights_give_timms_features_where_the_layouts_agree():
    """timm's Swin (patch merging at the start of a stage, no stage norms) maps onto ours; at
    sizes where every stage is a multiple of the window and longer than it, both compute the
    same stage outputs (elsewhere timm shifts before it pads)."""
    torch.manual_seed(0)
    kwargs = dict(embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=7)
    theirs = timm.create_model(
        "swin_tiny_patch4_window7_224", img_size=448, features_only=False, **kwargs
    ).eval()
    mapped, left_out = swin_state_dict(theirs.state_dict())
    assert sorted(left_out) == ["head.fc.bias", "head.fc.weight", "norm.bias", "norm.weight"]
    ours = SwinTransformer(**kwargs, drop_path_rate=0.0).eval()
    missing, unexpected = ours.load_state_dict(mapped, strict=False)
    assert unexpected == [] and all(k.startswith("output_norms.") for k in missing)
    x = torch.randn(1, 3, 448, 448)
    with torch.no_grad():
        features = ours(x)
        stage = theirs.patch_embed(x)
        for norm, feature, layer in zip(ours.output_norms, features, theirs.layers, strict=True):
            stage = layer(stage)
            torch.testing.assert_close(feature, norm(stage).permute(0, 3, 1, 2), rtol=0, atol=1e-5)


def test_swin_weights_of_another_shape_are_a_clear_error(tmp_path):
    path = tmp_path / "window12.pth"
    big_window = SwinTransformer(
        embed_dim=8, depths=(2, 2, 2, 2), num_heads=(1, 1, 2, 2), window_size=12
    )
    torch.save(big_window.state_dict(), path)
    kwargs = dict(embed_dim=8, depths=[2, 2, 2, 2], num_heads=[1, 1, 2, 2])
    with pytest.raises(
        CheckpointError, match=re.escape("relative_position_bias_table (529, 1), expected (169, 1)")
    ):
        FTUNetFormer(backbone_kwargs=kwargs, decode_channels=32, pretrained=str(path))
    with pytest.raises(ValueError, match="expected a Swin"):
        FTUNetFormer(backbone="resnet18")
