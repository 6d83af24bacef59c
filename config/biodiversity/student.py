"""The students: FT-UNetFormer (step 1, the baseline and step 2: one architecture, so step 2 can
start from step 1's weights) and the other families an ensemble can add (their own step 1 / step 2
configs: segformer_*.py, upernet_*.py)."""

from geoseg.models import FTUNetFormer, SegFormer, UPerNet

# The backbones' starting weights (step 1 and the baseline): True for timm's ImageNet weights of
# the backbone (downloaded once), or a local file. FT-UNetFormer: that Swin-Base window 7
# (`swin_base_patch4_window7_224`) in timm's layout, or GeoSeg's `pretrain_weights/stseg_base.pth`.
# SegFormer (`pvt_v2_b2`), UPerNet (`convnext_tiny`): timm's weights of that model. For a
# remote-sensing release, name its backbone too, e.g. UPerNet(backbone="swinv2_base_window8_256",
# backbone_kwargs={"img_size": 512}, pretrained="satlas_swinv2_b_naip_rgb.pth", normalization=...)
# (docs/models.md lists which weights fit which backbone, and the input scaling they expect).
BACKBONE_WEIGHTS = True
# Multispectral or 16-bit tiles (e.g. RGB + near-infrared): the network reads the bands of a
# RasterInput, and every dataset is given the same one (docs/data.md, multispectral):
#   from geoseg.bands import RasterInput
#   from geoseg.datasets import band_statistics_cached
#   stats = band_statistics_cached(
#       "data/biodiversity", "Train", raster=RasterInput(bands=(1, 2, 3, 4), dtype="uint16")
#   )
#   FTUNetFormer(raster=stats.raster_input(), normalization=stats.normalization, pretrained=...)
#   TargetDataset(..., raster=stats.raster_input())
SEGFORMER_BACKBONE_WEIGHTS = True
UPERNET_BACKBONE_WEIGHTS = True


def student(pretrained: bool) -> FTUNetFormer:
    """The published FT-UNetFormer (Swin-Base window 7, 256-channel decoder, no auxiliary head);
    ``pretrained``: start the backbone from ``BACKBONE_WEIGHTS``."""
    return FTUNetFormer(pretrained=BACKBONE_WEIGHTS if pretrained else False)


def segformer_student(pretrained: bool) -> SegFormer:
    """SegFormer's all-MLP decoder (768 wide) on PVT-v2-B2, timm's relative of MiT-B2."""
    return SegFormer(pretrained=SEGFORMER_BACKBONE_WEIGHTS if pretrained else False)


def upernet_student(pretrained: bool) -> UPerNet:
    """UPerNet (512 channels, auxiliary FCN head) on ConvNeXt-Tiny, mmsegmentation's baseline."""
    return UPerNet(pretrained=UPERNET_BACKBONE_WEIGHTS if pretrained else False)
