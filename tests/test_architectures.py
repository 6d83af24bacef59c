"""SegFormer, UPerNet and UNetFormer on several timm backbone families: shapes at odd sizes, the
stride 4..32 feature picking, the SegFormer and pyramid-pooling heads against hand computations,
rebuilding from a trained last.ckpt, a three-family ensemble, KD and the optimizer groups."""

from __future__ import annotations

import re

import cv2
import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F
from torch import nn

from geoseg.config import load_config
from geoseg.datasets import CLASSES, IGNORE_INDEX
from geoseg.datasets.io import read_mask
from geoseg.inference import (
    EnsemblePredictor,
    PredictionJob,
    check_same_classes,
    find_inputs,
    predict,
)
from geoseg.losses.kd import compute_kd_loss
from geoseg.models import (
    SegFormer,
    UNetFormer,
    UPerNet,
    load_model,
    load_model_and_spec,
    save_model,
)
from geoseg.models.checkpoint import read_checkpoint
from geoseg.models.encoder_decoder import stride_feature_indices
from geoseg.models.segformer import SegFormerHead
from geoseg.models.upernet import PyramidPooling, UPerNetHead
from geoseg.training import param_groups, train

from conftest import tiny_ftunetformer, write_config

NUM_CLASSES = 5  # not the project's 6, so a hard-coded class count shows
SIZE = (97, 131)  # no multiple of 32 nor within 3 px of one: every network pads and crops

# tiny members of each backbone family (no downloads: pretrained stays False)
BACKBONES = {
    "resnet18": {},
    "convnext_atto": dict(dims=[16, 32, 64, 128], depths=[1, 1, 1, 1]),
    "pvt_v2_b0": dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4]),
    "swin_tiny_patch4_window7_224": dict(embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1]),
}
# tiny decoders
DECODERS = {
    UNetFormer: dict(decode_channels=16, num_heads=2, window_size=4),
    SegFormer: dict(embed_dim=16),
    UPerNet: dict(channels=16, aux_channels=8),
}


def tiny(cls, backbone: str, num_classes: int = NUM_CLASSES, **kwargs) -> nn.Module:
    """``cls`` with a tiny decoder on the tiny ``backbone`` of BACKBONES."""
    args = dict(
        num_classes=num_classes,
        backbone=backbone,
        backbone_kwargs=BACKBONES[backbone],
        **DECODERS[cls],
    )
    return cls(**{**args, **kwargs})


def randomize_batchnorm(net: nn.Module, generator: torch.Generator, var_scale: float = 1.0):
    """Give every BatchNorm random running statistics and affine parameters (not the init)."""
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
                module.running_var.copy_((torch.rand(n, generator=generator) + 0.5) * var_scale)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(n, generator=generator) * 0.1)
    return net


def conv1x1(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """A 1x1 convolution by hand: einsum with the conv's weight (and its bias, if any)."""
    out = torch.einsum("bchw,oc->bohw", x, conv.weight[:, :, 0, 0])
    return out if conv.bias is None else out + conv.bias.view(1, -1, 1, 1)


def batchnorm_eval(x: torch.Tensor, bn: nn.BatchNorm2d) -> torch.Tensor:
    """BatchNorm in eval mode by hand, from its running statistics and affine parameters."""
    shape = (1, -1, 1, 1)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return (x - bn.running_mean.view(shape)) * scale.view(shape) + bn.bias.view(shape)


def bilinear(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# --- 1. every architecture on every backbone family: logits and aux logits at the input size ---


# three architectures x three backbone families, and timm's Swin (NHWC features) under UPerNet
ARCHITECTURES = [
    (cls, backbone)
    for cls in (UNetFormer, SegFormer, UPerNet)
    for backbone in ("resnet18", "convnext_atto", "pvt_v2_b0")
] + [(UPerNet, "swin_tiny_patch4_window7_224")]


@pytest.mark.parametrize(
    ("cls", "backbone"), ARCHITECTURES, ids=[f"{c.__name__}-{b}" for c, b in ARCHITECTURES]
)
def test_logits_at_odd_input_size(cls, backbone: str) -> None:
    net = tiny(cls, backbone)
    x = torch.rand(2, 3, *SIZE) * 255

    net.eval()
    with torch.no_grad():
        logits = net(x)
    assert isinstance(logits, torch.Tensor)
    assert logits.shape == (2, NUM_CLASSES, *SIZE)
    assert torch.isfinite(logits).all()

    net.train()
    logits, aux = net.forward_with_aux(x)
    assert logits.shape == (2, NUM_CLASSES, *SIZE)
    if cls is SegFormer:
        assert aux is None and not net.has_aux_head
    else:
        assert net.has_aux_head
        assert aux.shape == (2, NUM_CLASSES, *SIZE)
        assert torch.isfinite(aux).all()


def test_ftunetformer_at_odd_input_size() -> None:
    net = tiny_ftunetformer(NUM_CLASSES, aux_head=True)
    x = torch.rand(2, 3, *SIZE) * 255
    with torch.no_grad():
        assert net.eval()(x).shape == (2, NUM_CLASSES, *SIZE)
    logits, aux = net.train().forward_with_aux(x)
    assert logits.shape == aux.shape == (2, NUM_CLASSES, *SIZE)
    assert net.feature_indices == [0, 1, 2, 3]


# --- 2. picking the stride 4, 8, 16, 32 features ------------------------------------------------


@pytest.mark.parametrize(
    ("backbone", "expected"),
    [
        ("resnet18", [1, 2, 3, 4]),  # strides 2, 4, 8, 16, 32: the stem is left out
        ("convnext_atto", [0, 1, 2, 3]),
        ("pvt_v2_b0", [0, 1, 2, 3]),
        ("swin_tiny_patch4_window7_224", [0, 1, 2, 3]),
    ],
)
def test_feature_indices(backbone: str, expected: list[int]) -> None:
    net = tiny(SegFormer, backbone)
    assert net.feature_indices == expected
    strides = net.backbone.feature_info.reduction()
    assert [strides[i] for i in net.feature_indices] == [4, 8, 16, 32]
    # the decoder was built on the channels of exactly those features
    channels = net.backbone.feature_info.channels()
    assert [p.in_channels for p in net.decoder.projections] == [channels[i] for i in expected]
    # and the features handed to it are NCHW at strides 4..32
    with torch.no_grad():
        features = net.features(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features] == [(16, 24), (8, 12), (4, 6), (2, 3)]
    assert [f.shape[1] for f in features] == [channels[i] for i in expected]


@pytest.mark.parametrize(
    ("build", "name", "strides"),
    [
        (
            lambda: UNetFormer(backbone="resnet18", backbone_kwargs={"out_indices": (0, 1, 2, 3)}),
            "resnet18",
            [2, 4, 8, 16],
        ),
        (
            lambda: SegFormer(
                backbone="vit_tiny_patch16_224",
                backbone_kwargs=dict(depth=3, embed_dim=16, num_heads=1),
                embed_dim=16,
            ),
            "vit_tiny_patch16_224",
            [16, 16, 16],
        ),
    ],
    ids=["resnet_stem_first", "plain_vit"],
)
def test_backbone_without_strides_4_to_32_is_rejected(build, name: str, strides) -> None:
    with pytest.raises(ValueError) as error:
        build()
    message = str(error.value)
    assert repr(name) in message
    assert str(strides) in message


@pytest.mark.parametrize(
    ("reductions", "expected"),
    [
        ([2, 4, 8, 16, 32], [1, 2, 3, 4]),
        ([4, 8, 16, 32], [0, 1, 2, 3]),
        ([4, 8, 16, 32, 64], [0, 1, 2, 3]),
        ((1, 2, 4, 8, 16, 32), [2, 3, 4, 5]),
        # a repeated stride: the deepest feature at that stride is taken
        ([4, 4, 8, 16, 16, 16, 32], [1, 2, 5, 6]),
        ([2, 4, 4, 4, 8, 8, 16, 32, 32], [3, 5, 6, 8]),
        # any order: found by value
        ([32, 16, 8, 4], [3, 2, 1, 0]),
    ],
)
def test_stride_feature_indices(reductions, expected: list[int]) -> None:
    assert stride_feature_indices(reductions, "some_net") == expected


@pytest.mark.parametrize(
    "reductions", [[2, 4, 8, 16], [4, 8, 16], [16, 16, 16], [8, 16, 32, 64], []]
)
def test_stride_feature_indices_missing_stride(reductions) -> None:
    with pytest.raises(ValueError) as error:
        stride_feature_indices(reductions, "my_backbone")
    assert "'my_backbone'" in str(error.value)
    assert str(reductions) in str(error.value)


# --- 3. SegFormer's head against an independent reference ---------------------------------------


def projected_to_stride_4(head: SegFormerHead, features: list[torch.Tensor]) -> list[torch.Tensor]:
    """Steps 1 and 2 by hand: each feature's 1x1 projection, upsampled to the stride-4 map."""
    size = features[0].shape[-2:]
    pairs = zip(head.projections, features, strict=True)
    return [bilinear(conv1x1(f, projection), size) for projection, f in pairs]


def segformer_head_reference(head: SegFormerHead, features: list[torch.Tensor]) -> torch.Tensor:
    """The four steps of SegFormer's head with plain tensor ops and the module's parameters."""
    stacked = torch.cat(projected_to_stride_4(head, features)[::-1], dim=1)  # deepest first
    conv, bn, _ = head.fuse
    fused = torch.relu(batchnorm_eval(conv1x1(stacked, conv), bn))
    return conv1x1(fused, head.classifier)  # dropout: identity in eval mode


def test_segformer_head_equals_reference() -> None:
    generator = torch.Generator().manual_seed(1)
    channels = [3, 5, 7, 9]
    head = SegFormerHead(channels, num_classes=NUM_CLASSES, embed_dim=6, dropout=0.1)
    randomize_batchnorm(head, generator)
    head.eval()
    sizes = [(8, 12), (4, 6), (2, 3), (1, 2)]
    features = [
        torch.randn(2, c, *s, generator=generator) for c, s in zip(channels, sizes, strict=True)
    ]
    with torch.no_grad():
        out = head(features)
        expected = segformer_head_reference(head, features)
        # the concatenation order matters: the shallowest-first order gives another result
        conv, bn, _ = head.fuse
        shallowest_first = torch.cat(projected_to_stride_4(head, features), 1)
        wrong_order = conv1x1(
            torch.relu(batchnorm_eval(conv1x1(shallowest_first, conv), bn)),
            head.classifier,
        )
    assert out.shape == (2, NUM_CLASSES, 8, 12)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(out, wrong_order, atol=1e-3)
    with pytest.raises(RuntimeError, match="no aux_head"):
        head(features, with_aux=True)


def test_segformer_network_is_backbone_then_head() -> None:
    net = tiny(SegFormer, "convnext_atto")
    randomize_batchnorm(net, torch.Generator().manual_seed(2)).eval()
    x = torch.rand(1, 3, 64, 96) * 255
    with torch.no_grad():
        features = net.features(net.input_normalization(x))
        expected = bilinear(segformer_head_reference(net.decoder, features), (64, 96))
        torch.testing.assert_close(net(x), expected, rtol=1e-5, atol=1e-5)


# --- 4. pyramid pooling by hand; UPerNet's head -------------------------------------------------


def adaptive_bins_mean(x: torch.Tensor, scale: int) -> torch.Tensor:
    """Average pooling to scale x scale bins by slicing: bin i spans [floor(i*H/s), ceil((i+1)*H/s))."""
    h, w = x.shape[-2:]
    rows = []
    for i in range(scale):
        top, bottom = (i * h) // scale, -((-(i + 1) * h) // scale)
        row = []
        for j in range(scale):
            left, right = (j * w) // scale, -((-(j + 1) * w) // scale)
            row.append(x[..., top:bottom, left:right].mean(dim=(-2, -1)))
        rows.append(torch.stack(row, dim=-1))
    return torch.stack(rows, dim=-2)


@pytest.mark.parametrize("size", [(6, 6), (7, 5)])
def test_pyramid_pooling_by_hand(size) -> None:
    generator = torch.Generator().manual_seed(3)
    pooling = PyramidPooling(in_channels=4, channels=3, scales=(1, 2, 3))
    randomize_batchnorm(pooling, generator).eval()
    x = torch.randn(2, 4, *size, generator=generator)
    with torch.no_grad():
        out = pooling(x)
        assert out.shape == (2, 4 + 3 * 3, *size)
        assert torch.equal(out[:, :4], x)  # the input itself comes first
        for k, (scale, branch) in enumerate(zip((1, 2, 3), pooling.branches, strict=True)):
            bins = adaptive_bins_mean(x, scale)
            assert bins.shape == (2, 4, scale, scale)
            conv, bn, _ = branch
            expected = bilinear(torch.relu(batchnorm_eval(conv1x1(bins, conv), bn)), size)
            got = out[:, 4 + 3 * k : 4 + 3 * (k + 1)]
            torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        # scale 1 is the global mean: constant over the map
        torch.testing.assert_close(out[:, 4:7], out[:, 4:7, :1, :1].expand(-1, -1, *size))
    if size == (6, 6):  # the 2x2 bins of a 6x6 map are its 3x3 quarters
        quarter = x[:, :, 3:, :3].mean(dim=(-2, -1))
        torch.testing.assert_close(adaptive_bins_mean(x, 2)[..., 1, 0], quarter)


def test_upernet_head_strides_and_flow() -> None:
    channels = [4, 6, 8, 10]
    head = UPerNetHead(
        channels,
        num_classes=NUM_CLASSES,
        channels=8,
        pool_scales=(1, 2, 3, 6),
        dropout=0.1,
        aux_head=True,
        aux_channels=4,
    )
    randomize_batchnorm(head, torch.Generator().manual_seed(4)).eval()
    sizes = [(16, 24), (8, 12), (4, 6), (2, 3)]  # strides 4..32 of a 64x96 image
    features = [torch.randn(2, c, *s) for c, s in zip(channels, sizes, strict=True)]
    with torch.no_grad():
        logits, aux = head(features, with_aux=True)
        assert logits.shape == (2, NUM_CLASSES, 16, 24)  # stride 4
        assert aux.shape == (2, NUM_CLASSES, 4, 6)  # stride 16
        assert torch.equal(head(features), logits)
        for i in range(4):
            changed = list(features)
            changed[i] = features[i] + 1.0
            new_logits, new_aux = head(changed, with_aux=True)
            # every level reaches the logits; the aux head reads the stride-16 features alone
            assert not torch.allclose(new_logits, logits)
            assert torch.equal(new_aux, aux) == (i != 2)
        # the aux head by hand: 3x3 conv + BN + ReLU, dropout (identity), 1x1 classifier
        conv, bn, _ = head.aux_head[0]
        hidden = torch.relu(batchnorm_eval(F.conv2d(features[2], conv.weight, padding=1), bn))
        torch.testing.assert_close(aux, conv1x1(hidden, head.aux_head[2]), rtol=1e-5, atol=1e-5)
    without = UPerNetHead(
        channels,
        num_classes=NUM_CLASSES,
        channels=8,
        pool_scales=(1, 2),
        dropout=0.0,
        aux_head=False,
        aux_channels=4,
    )
    assert without.aux_head is None
    with pytest.raises(RuntimeError, match="no aux_head"):
        without(features, with_aux=True)


# --- 5. a trained network rebuilt from last.ckpt -------------------------------------------------

TRAINED_NETS = {
    "SegFormer": (
        "SegFormer(num_classes=num_classes, backbone='pvt_v2_b0', embed_dim=16, backbone_kwargs="
        "dict(embed_dims=[16, 32, 64, 128], depths=[1, 1, 1, 1], num_heads=[1, 1, 2, 4]))"
    ),
    "UPerNet": (
        "UPerNet(num_classes=num_classes, backbone='convnext_atto', channels=16, aux_channels=8, "
        "backbone_kwargs=dict(dims=[16, 32, 64, 128], depths=[1, 1, 1, 1]))"
    ),
}


@pytest.fixture(scope="module", params=list(TRAINED_NETS))
def trained(request, synthetic_root, tmp_path_factory):
    """One epoch (two optimizer steps) of conftest's tiny config with the net replaced."""
    name = request.param
    workdir = tmp_path_factory.mktemp(f"train_{name}")
    config_path = write_config(
        workdir / "tiny.py", data_root=synthetic_root, weights_path=workdir / "weights", max_epoch=1
    )
    text = config_path.read_text()
    text, imports = re.subn(
        r"from geoseg\.models import \w+", f"from geoseg.models import {name}", text
    )
    text, nets = re.subn(
        r"^net = FTUNetFormer\(.*?^\)$", f"net = {TRAINED_NETS[name]}", text, flags=re.S | re.M
    )
    assert imports == nets == 1, "conftest's TINY_CONFIG changed: update this fixture"
    config_path.write_text(text)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        torch.manual_seed(0)
        trainer, module = train(load_config(config_path))
    return name, workdir / "weights" / "last.ckpt", trainer, module


def test_rebuilt_from_last_checkpoint_predicts_like_the_trained_module(trained) -> None:
    name, last, trainer, module = trained
    assert trainer.global_step == 2
    checkpoint = read_checkpoint(last)
    assert checkpoint["geoseg"]["model_class"] == name
    assert checkpoint["global_step"] == 2
    trained_net = module.net
    assert type(trained_net).__name__ == name
    # trained: the decoder's BatchNorm statistics are no longer their init (0 mean, 1 variance)
    norms = [m for m in trained_net.decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.num_batches_tracked.item() == 2 for m in norms)
    assert any(m.running_mean.abs().sum() > 0 for m in norms)

    net, spec = load_model_and_spec(last)
    assert type(net) is type(trained_net)
    assert not net.training
    assert spec.num_classes == len(CLASSES)
    assert net.init_args == trained_net.init_args
    rebuilt_state = net.state_dict()
    for key, value in trained_net.state_dict().items():
        assert torch.equal(rebuilt_state[key], value), key
    trained_net.eval()
    x = torch.rand(2, 3, 40, 56) * 255
    with torch.no_grad():
        expected = trained_net(x)
        assert torch.equal(net(x), expected)
        # and it is not what an untrained network of that class predicts
        fresh = type(net)(**net.init_args).eval()
        assert not torch.equal(fresh(x), expected)


def test_save_model_round_trip_with_perturbed_weights(tmp_path) -> None:
    """save_model (the minimal checkpoint) of SegFormer and UPerNet off their init: exact logits."""
    generator = torch.Generator().manual_seed(5)
    for net in (tiny(SegFormer, "pvt_v2_b0"), tiny(UPerNet, "convnext_atto")):
        with torch.no_grad():
            for p in net.parameters():
                p.add_(torch.randn(p.shape, generator=generator) * 0.01)
        randomize_batchnorm(net, generator).eval()
        path = tmp_path / f"{type(net).__name__}.ckpt"
        save_model(net, path, classes=CLASSES[:NUM_CLASSES], ignore_index=IGNORE_INDEX)
        loaded = load_model(path)
        assert type(loaded) is type(net) and not loaded.training
        x = torch.rand(1, 3, *SIZE) * 255
        with torch.no_grad():
            assert torch.equal(loaded(x), net(x))


# --- 6. an ensemble of three families -----------------------------------------------------------


def ensemble_members() -> list[nn.Module]:
    """UNetFormer/ResNet-18, SegFormer/PVT-v2, UPerNet/ConvNeXt with sharpened BatchNorms, so their
    argmaxes vary over the image."""
    generator = torch.Generator().manual_seed(6)
    members = [
        tiny(UNetFormer, "resnet18", num_classes=len(CLASSES)),
        tiny(SegFormer, "pvt_v2_b0", num_classes=len(CLASSES)),
        tiny(UPerNet, "convnext_atto", num_classes=len(CLASSES)),
    ]
    return [randomize_batchnorm(net, generator, var_scale=0.01).eval() for net in members]


def test_three_family_ensemble_equals_the_hand_merge(tmp_path) -> None:
    members = ensemble_members()
    assert len({sum(p.numel() for p in net.parameters()) for net in members}) == 3
    paths = []
    for index, net in enumerate(members):
        paths.append(tmp_path / f"member{index}.ckpt")
        save_model(net, paths[-1], classes=CLASSES, ignore_index=IGNORE_INDEX)
    # as ensemble_inference.py loads them
    models, specs = zip(*(load_model_and_spec(path) for path in paths), strict=True)
    assert [type(m) for m in models] == [UNetFormer, SegFormer, UPerNet]
    assert check_same_classes(specs, [str(p) for p in paths]) == CLASSES

    rng = np.random.default_rng(7)
    images = rng.integers(0, 256, (2, 33, 47, 3), dtype=np.uint8)
    batch = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        logits = [net(batch) for net in models]
    mean_logits = (logits[0] + logits[1] + logits[2]) / 3
    mean_probs = sum(torch.exp(l - l.logsumexp(1, keepdim=True)) for l in logits) / 3  # noqa: E741

    by_logits = EnsemblePredictor(
        models, precision="fp32", scales=(1.0,), flips=("none",), merge="logits"
    )
    by_probs = EnsemblePredictor(
        models, precision="fp32", scales=(1.0,), flips=("none",), merge="probs"
    )
    assert by_logits.passes == by_probs.passes == 3
    torch.testing.assert_close(by_logits.merged(batch), mean_logits, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(by_probs.merged(batch), mean_probs, rtol=1e-5, atol=1e-6)
    pred, confidence = by_probs.predict(batch)
    assert torch.equal(pred, mean_probs.argmax(1))
    torch.testing.assert_close(confidence, mean_probs.max(1).values, rtol=1e-5, atol=1e-6)
    # not a degenerate test: every member and both merge rules matter somewhere
    ensemble_pred = mean_logits.argmax(1)
    assert len(ensemble_pred.unique()) >= 3
    for member_logits in logits:
        assert (member_logits.argmax(1) != ensemble_pred).any()
    assert (mean_probs.argmax(1) != ensemble_pred).any()

    # the folder path of ensemble_inference.py: decode PNGs, predict, write masks and confidence
    folder = tmp_path / "in"
    folder.mkdir()
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"tile_{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    job = PredictionJob(tmp_path / "out", batch_size=2, num_workers=0, save_confidence=True)
    predict(by_logits, find_inputs(folder), job)
    confidence = torch.softmax(mean_logits, 1).max(1).values
    for index in range(2):
        mask = read_mask(tmp_path / "out" / f"tile_{index}.png")
        assert np.array_equal(mask, ensemble_pred[index].numpy())
        written = read_mask(tmp_path / "out" / "confidence" / f"tile_{index}.png").astype(int)
        by_hand = (confidence[index] * 255).round().numpy().astype(int)
        assert np.abs(written - by_hand).max() <= 1


# --- 7. KD between two new families -------------------------------------------------------------


def test_kd_loss_segformer_student_upernet_teacher() -> None:
    student = tiny(SegFormer, "pvt_v2_b0").train()
    teacher = randomize_batchnorm(
        tiny(UPerNet, "convnext_atto"), torch.Generator().manual_seed(8), var_scale=0.01
    ).eval()
    x = torch.rand(2, 3, 40, 56) * 255
    with torch.no_grad():
        teacher_logits = teacher(x)
    student_logits = student(x)
    assert student_logits.shape == teacher_logits.shape == (2, NUM_CLASSES, 40, 56)
    temperature, threshold = 2.0, 0.4
    loss, kept_fraction = compute_kd_loss(
        student_logits, teacher_logits, temperature=temperature, confidence_threshold=threshold
    )
    # by hand: KL(q || r) per pixel over the pixels whose teacher confidence reaches the threshold
    t, s = teacher_logits.double(), student_logits.detach().double()
    q = torch.softmax(t / temperature, 1)
    r = torch.softmax(s / temperature, 1)
    kl = (q * (q.log() - r.log())).sum(1)
    keep = torch.softmax(t, 1).max(1).values >= threshold
    assert 0 < keep.sum() < keep.numel()  # the mask matters
    expected = temperature**2 * kl[keep].mean()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(kept_fraction.double(), keep.double().mean())
    loss.backward()
    grad = student.decoder.classifier.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert all(p.grad is None for p in teacher.parameters())


# --- 8. optimizer parameter groups --------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [lambda: tiny(SegFormer, "pvt_v2_b0"), lambda: tiny(UPerNet, "convnext_atto")],
    ids=["SegFormer", "UPerNet"],
)
def test_param_groups_split_backbone_and_decoder(build) -> None:
    net = build()
    groups = param_groups(net, lr=1e-3, backbone_lr=1e-4, weight_decay=0.05)
    named = dict(net.named_parameters())
    backbone = {id(p) for n, p in named.items() if n.startswith("backbone.")}
    decoder = {id(p) for n, p in named.items() if not n.startswith("backbone.")}
    assert backbone and decoder
    assert all(n.startswith(("backbone.", "decoder.")) for n in named)

    seen = [id(p) for group in groups for p in group["params"]]
    assert len(seen) == len(set(seen)) == len(named)  # every parameter once
    in_backbone_groups = [id(p) for g in groups if g["lr"] == 1e-4 for p in g["params"]]
    in_decoder_groups = [id(p) for g in groups if g["lr"] == 1e-3 for p in g["params"]]
    assert set(in_backbone_groups) == backbone and len(in_backbone_groups) == len(backbone)
    assert set(in_decoder_groups) == decoder and len(in_decoder_groups) == len(decoder)
    for group in groups:
        decays = {p.ndim > 1 for p in group["params"]}
        assert len(decays) == 1  # weights and norms/biases are apart
        assert group["weight_decay"] == (0.05 if decays.pop() else 0.0)
    assert len(groups) == 4  # backbone/decoder x decay/no decay

    # a frozen part is left out of every group
    net.decoder.requires_grad_(False)
    frozen = param_groups(net, lr=1e-3, backbone_lr=1e-4, weight_decay=0.05)
    assert {id(p) for g in frozen for p in g["params"]} == backbone
    assert all(g["lr"] == 1e-4 for g in frozen)


# --- the listing: python -m geoseg.models ---------------------------------------------------


def test_listing_counts_parameters_and_times_a_step(monkeypatch, capsys) -> None:
    from geoseg.models import __main__ as listing

    argv = ["geoseg.models", "--models", "SegFormer", "--size", "32", "--repeats", "1"]
    monkeypatch.setattr("sys.argv", argv)
    listing.main()
    out = capsys.readouterr().out
    assert "2 x 3 x 32 x 32, fp32, forward + backward on cpu" in out
    (row,) = [line for line in out.splitlines() if line.startswith("| SegFormer")]
    name, backbone, backbone_params, decoder_params, seconds = row.strip("|").split("|")
    assert backbone.strip() == "pvt_v2_b2"
    # independent counts: timm's own backbone, and the head's layers by hand (768-wide, 6 classes)
    timm_backbone = timm.create_model("pvt_v2_b2", features_only=True, pretrained=False)
    assert (
        backbone_params.strip()
        == f"{sum(p.numel() for p in timm_backbone.parameters()) / 1e6:.1f} M"
    )
    e, channels = 768, (64, 128, 320, 512)
    head = sum(c * e + e for c in channels) + 4 * e * e + 2 * e + e * 6 + 6
    assert decoder_params.strip() == f"{head / 1e6:.2f} M"
    assert float(seconds) > 0


def test_listing_names_an_unknown_network(monkeypatch) -> None:
    from geoseg.errors import ConfigError
    from geoseg.models import __main__ as listing

    monkeypatch.setattr("sys.argv", ["geoseg.models", "--models", "SegNet"])
    with pytest.raises(ConfigError, match=r"unknown network\(s\) \['SegNet'\]; expected some of"):
        listing.main()


def test_upernet_training_batch_of_one_is_a_named_error() -> None:
    from geoseg.errors import TrainingError

    net = UPerNet(
        backbone="convnext_atto",
        backbone_kwargs={"dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1]},
        channels=16,
        aux_channels=8,
    )
    with pytest.raises(TrainingError, match="at least 2 images per device"):
        net.train()(torch.rand(1, 3, 64, 64) * 255)
    assert net.eval()(torch.rand(1, 3, 64, 64) * 255).shape == (1, 6, 64, 64)  # inference is fine


@pytest.mark.parametrize(
    ("backbone", "kwargs", "rounds_up"),
    [
        ("resnet18", {}, True),  # padded strided convs: ceil(61 / s)
        ("efficientnet_b0", {}, True),
        ("convnext_atto", {"dims": [16, 32, 64, 128], "depths": [1, 1, 1, 1]}, False),  # 4x4 stem
    ],
)
def test_size_rounding_is_probed_from_the_backbone(backbone, kwargs, rounds_up) -> None:
    net = UNetFormer(backbone=backbone, backbone_kwargs=kwargs, decode_channels=16, num_heads=2)
    assert net.backbone_rounds_up is rounds_up
    # the probe ran in eval mode and left nothing behind: BatchNorm statistics untouched
    assert net.training
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.running_mean, torch.zeros_like(module.running_mean))
