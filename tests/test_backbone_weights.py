"""Backbone weights files: timm's layout, framework prefixes, original releases and torchvision's
Swin-V2 mapped onto timm features models, with every key checked."""

import argparse
import logging
import re

import pytest
import timm
import torch
from safetensors.torch import save_file
from torchvision.models.swin_transformer import (
    PatchMergingV2,
    SwinTransformer,
    SwinTransformerBlockV2,
)

from geoseg.errors import CheckpointError
from geoseg.models.backbone_weights import load_backbone_weights

TINY_SWIN = dict(embed_dim=24, depths=(2, 2, 2, 2), num_heads=(1, 2, 4, 8))
# pvt_v2_b0 is checked in its original layout below.
MODELS = [
    ("convnext_atto", {}),
    ("swin_tiny_patch4_window7_224", dict(TINY_SWIN, depths=(1, 1, 1, 1))),
    ("swinv2_tiny_window8_256", TINY_SWIN),
]


def full_state(name: str, seed: int = 1, **kwargs) -> dict[str, torch.Tensor]:
    """The state dict of timm's full model ``name``, initialised from ``seed``."""
    torch.manual_seed(seed)
    return timm.create_model(name, **kwargs).state_dict()


def features_model(name: str, **kwargs) -> torch.nn.Module:
    """A features model initialised from another seed than the files (so loading shows)."""
    torch.manual_seed(0)
    return timm.create_model(name, features_only=True, **kwargs)


def timm_loaded(name: str, path, **kwargs) -> torch.nn.Module:
    """The reference: timm's own loader reading the timm-layout file ``path``."""
    return timm.create_model(
        name,
        features_only=True,
        pretrained=True,
        pretrained_cfg_overlay={"file": str(path)},
        **kwargs,
    )


def load_error(tmp_path, state) -> str:
    """The message of the CheckpointError that loading ``state`` into a ResNet-18 raises."""
    torch.save(state, tmp_path / "weights.pth")
    with pytest.raises(CheckpointError) as error:
        load_backbone_weights(features_model("resnet18"), "resnet18", tmp_path / "weights.pth")
    message = str(error.value)
    assert str(tmp_path / "weights.pth") in message and "resnet18" in message
    return message


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_timm_state_dict_loads_exactly_and_reports_the_classifier(tmp_path, caplog, suffix):
    state = full_state("resnet18")
    path = tmp_path / f"resnet18{suffix}"
    if suffix == ".pth":
        torch.save(state, path)
    else:
        save_file(state, path)
    backbone = features_model("resnet18")
    assert not torch.equal(backbone.state_dict()["conv1.weight"], state["conv1.weight"])
    with caplog.at_level(logging.INFO, logger="geoseg.models.backbone_weights"):
        load_backbone_weights(backbone, "resnet18", path)
    loaded = backbone.state_dict()
    assert set(loaded) == set(state) - {"fc.weight", "fc.bias"}
    assert all(torch.equal(value, state[key]) for key, value in loaded.items())
    assert "timm layout" in caplog.text and "fc.bias, fc.weight" in caplog.text


@pytest.mark.parametrize(("name", "kwargs"), MODELS, ids=[name for name, _ in MODELS])
def test_timm_layout_loads_as_timm_itself_does(tmp_path, name, kwargs):
    """Models whose features wrapper renames keys (``stages.0`` -> ``stages_0``)."""
    save_file(full_state(name, **kwargs), tmp_path / "weights.safetensors")
    backbone = features_model(name, **kwargs)
    load_backbone_weights(backbone, name, tmp_path / "weights.safetensors", kwargs)
    reference = timm_loaded(name, tmp_path / "weights.safetensors", **kwargs).state_dict()
    loaded = backbone.state_dict()
    assert loaded.keys() == reference.keys()
    assert all(torch.equal(loaded[key], reference[key]) for key in reference)


def test_saved_features_model_loads_back(tmp_path):
    source = features_model("swinv2_tiny_window8_256", **TINY_SWIN)
    with torch.no_grad():
        for parameter in source.parameters():
            parameter.add_(1.0)
    torch.save(source.state_dict(), tmp_path / "features.pth")
    backbone = features_model("swinv2_tiny_window8_256", **TINY_SWIN)
    load_backbone_weights(backbone, "swinv2_tiny_window8_256", tmp_path / "features.pth", TINY_SWIN)
    expected = source.state_dict()
    assert all(torch.equal(value, expected[key]) for key, value in backbone.state_dict().items())


def test_moco_checkpoint_loads_the_query_encoder(tmp_path, caplog):
    """SSL4EO-S12's MoCo release: ``module.encoder_q.*`` with a projection MLP as ``fc``, next to
    the momentum encoder ``encoder_k`` (equally fitting, left out) and the queue."""
    query, key = full_state("resnet18", seed=1), full_state("resnet18", seed=2)
    state = {}
    for encoder, weights in (("encoder_q", query), ("encoder_k", key)):
        body = {k: v for k, v in weights.items() if not k.startswith("fc.")}
        body |= {"fc.0.weight": torch.ones(512, 512), "fc.2.weight": torch.ones(128, 512)}
        state |= {f"module.{encoder}.{k}": v for k, v in body.items()}
    state |= {"module.queue": torch.zeros(128, 16), "module.queue_ptr": 0}
    torch.save({"state_dict": state, "epoch": 99, "arch": "resnet18"}, tmp_path / "moco.pth.tar")
    backbone = features_model("resnet18")
    with caplog.at_level(logging.INFO, logger="geoseg.models.backbone_weights"):
        load_backbone_weights(backbone, "resnet18", tmp_path / "moco.pth.tar")
    loaded = backbone.state_dict()
    assert all(torch.equal(value, query[k]) for k, value in loaded.items())
    assert not torch.equal(loaded["conv1.weight"], key["conv1.weight"])
    assert "under 'encoder_q.'" in caplog.text
    assert "fc.0.weight" in caplog.text  # the projection MLP: a head of the pretraining network
    assert "encoder_k.* (122)" in caplog.text and "queue" in caplog.text


def test_dino_checkpoint_loads_the_teacher(tmp_path):
    teacher, student = full_state("resnet18", seed=1), full_state("resnet18", seed=2)
    checkpoint = {
        "teacher": {f"backbone.{k}": v for k, v in teacher.items() if not k.startswith("fc.")},
        "student": {f"module.backbone.{k}": v for k, v in student.items() if k[:3] != "fc."},
        "epoch": 100,
        "args": argparse.Namespace(arch="resnet18", lr=5e-4),  # as DINO's main script saves it
    }
    torch.save(checkpoint, tmp_path / "dino.pth")
    backbone = features_model("resnet18")
    load_backbone_weights(backbone, "resnet18", tmp_path / "dino.pth")
    assert all(torch.equal(value, teacher[k]) for k, value in backbone.state_dict().items())


def test_original_pvt_v2_layout_is_converted_by_timms_filter(tmp_path):
    """The PVT-v2 release names (``block1.0``, ``patch_embed2``, ``norm1``), which timm's
    ``checkpoint_filter_fn`` converts."""
    state = full_state("pvt_v2_b0")
    save_file(state, tmp_path / "timm.safetensors")

    def original(key: str) -> str:
        key = re.sub(r"^stages\.(\d+)\.blocks\.", lambda m: f"block{int(m[1]) + 1}.", key)
        key = re.sub(r"^stages\.(\d+)\.downsample\.", lambda m: f"patch_embed{int(m[1]) + 1}.", key)
        key = re.sub(r"^stages\.(\d+)\.norm\.", lambda m: f"norm{int(m[1]) + 1}.", key)
        return key.replace("patch_embed.", "patch_embed1.").replace("dwconv.", "dwconv.dwconv.")

    torch.save({original(k): v for k, v in state.items()}, tmp_path / "pvt_v2_b0.pth")
    assert "block1.0.mlp.dwconv.dwconv.weight" in torch.load(tmp_path / "pvt_v2_b0.pth")
    backbone = features_model("pvt_v2_b0")
    load_backbone_weights(backbone, "pvt_v2_b0", tmp_path / "pvt_v2_b0.pth")
    reference = timm_loaded("pvt_v2_b0", tmp_path / "timm.safetensors").state_dict()
    assert all(torch.equal(value, reference[k]) for k, value in backbone.state_dict().items())


def torchvision_swin_v2(seed: int) -> SwinTransformer:
    """torchvision's Swin-V2 at TINY_SWIN's size, window 8, in eval mode, its weights moved off
    their initial values (zero biases, unit norms, equal logit scales) so the mapping shows."""
    torch.manual_seed(seed)
    reference = SwinTransformer(
        patch_size=[4, 4],
        embed_dim=24,
        depths=[2, 2, 2, 2],
        num_heads=[1, 2, 4, 8],
        window_size=[8, 8],
        stochastic_depth_prob=0.0,
        block=SwinTransformerBlockV2,
        downsample_layer=PatchMergingV2,
    ).eval()
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    return reference


def test_torchvision_swin_v2_gives_torchvisions_stage_outputs(tmp_path, caplog):
    """torchgeo's Satlas Swin-V2 layout, checked against torchvision's own network."""
    reference = torchvision_swin_v2(seed=3)
    # Satlas' own files wrap it as backbone.backbone next to their FPN and heads.
    state = {f"backbone.backbone.{k}": v for k, v in reference.state_dict().items()}
    state["intermediates.0.fpn.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "satlas_swinv2.pth")

    kwargs = dict(TINY_SWIN, window_size=8, img_size=256)
    backbone = features_model("swinv2_tiny_window8_256", **kwargs).eval()
    with caplog.at_level(logging.INFO, logger="geoseg.models.backbone_weights"):
        load_backbone_weights(
            backbone, "swinv2_tiny_window8_256", tmp_path / "satlas_swinv2.pth", kwargs
        )
    assert "torchvision Swin-V2 layout" in caplog.text
    assert "relative_position_index" in caplog.text and "intermediates.0.fpn.weight" in caplog.text

    image = torch.randn(1, 3, 256, 256)
    with torch.no_grad():
        ours = backbone(image)
        theirs, x = [], image
        for index, layer in enumerate(reference.features):
            x = layer(x)
            if index % 2 == 1:  # the outputs of the four stages (NHWC)
                theirs.append(x)
    assert [tuple(t.shape) for t in ours] == [
        (1, 64, 64, 24),
        (1, 32, 32, 48),
        (1, 16, 16, 96),
        (1, 8, 8, 192),
    ]
    for stage, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=1e-5, rtol=0), f"stage {stage}: {(a - b).abs().max()}"


def test_missing_backbone_key_is_an_error_naming_it(tmp_path):
    state = full_state("resnet18")
    del state["layer3.1.bn2.running_var"], state["layer1.0.bn1.num_batches_tracked"]
    message = load_error(tmp_path, state)
    assert "missing" in message and "layer3.1.bn2.running_var" in message
    assert "num_batches_tracked" not in message  # the model keeps its own count


def test_thirteen_band_conv1_is_an_error_with_both_shapes(tmp_path):
    state = full_state("resnet18", in_chans=13)
    message = load_error(tmp_path, state)
    assert "conv1.weight (64, 13, 7, 7), expected (64, 3, 7, 7)" in message
    assert "takes 3 input bands" in message and "in_chans=13" in message


def test_unknown_key_inside_the_prefix_is_an_error_naming_it(tmp_path):
    state = {f"backbone.{k}": v for k, v in full_state("resnet18").items()}
    state["backbone.layer2.0.se.fc.weight"] = torch.zeros(8, 128)
    state["decode_head.conv.weight"] = torch.zeros(8)  # outside the prefix: left out
    message = load_error(tmp_path, state)
    assert "unexpected" in message and "layer2.0.se.fc.weight" in message
    assert "decode_head" not in message and "prefix 'backbone.'" in message


def test_missing_file_names_the_path(tmp_path):
    path = tmp_path / "nowhere" / "resnet18.pth"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        load_backbone_weights(features_model("resnet18"), "resnet18", path)


def test_satlas_swin_v2_through_a_network_built_for_512_tiles(tmp_path):
    """The recipe of docs/models.md: a network's Swin-V2 built for the tile size (img_size=512) from
    torchvision-layout weights gives torchvision's stage features on a 512 tile."""
    from geoseg.models import UNetFormer

    reference = torchvision_swin_v2(seed=4)
    torch.save(reference.state_dict(), tmp_path / "swinv2.pth")
    net = UNetFormer(
        backbone="swinv2_tiny_window8_256",
        backbone_kwargs=dict(TINY_SWIN, img_size=512),
        pretrained=str(tmp_path / "swinv2.pth"),
        decode_channels=16,
        num_heads=2,
    ).eval()
    image = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        ours, x = net.features(image), image
        for index, layer in enumerate(reference.features):
            x = layer(x)
            if index % 2 == 1:  # stage outputs, NHWC there, NCHW from the network
                torch.testing.assert_close(ours[index // 2], x.permute(0, 3, 1, 2))
