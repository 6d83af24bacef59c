"""The student of step 1, the baseline and step 2: one architecture, so step 2 can start from
step 1's weights."""

from geoseg.models import FTUNetFormer

# The backbone's starting weights (step 1 and the baseline): True for timm's ImageNet Swin-Base
# window 7 (`swin_base_patch4_window7_224`, downloaded once), or a local file: that model's timm
# weights, or GeoSeg's `pretrain_weights/stseg_base.pth` (the published FT-UNetFormer's start).
BACKBONE_WEIGHTS = True


def student(pretrained: bool) -> FTUNetFormer:
    """The published FT-UNetFormer (Swin-Base window 7, 256-channel decoder, no auxiliary head);
    ``pretrained``: start the backbone from ``BACKBONE_WEIGHTS``."""
    return FTUNetFormer(pretrained=BACKBONE_WEIGHTS if pretrained else False)
