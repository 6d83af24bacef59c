"""The student of step 1, the baseline and step 2: one architecture, so step 2 can start from
step 1's weights."""

from geoseg.models import FTUNetFormer


def student(pretrained: bool) -> FTUNetFormer:
    """FT-UNetFormer on Swin-Base; ``pretrained``: timm's ImageNet backbone (downloaded once;
    offline, give a local weights file path to FTUNetFormer's ``pretrained``)."""
    return FTUNetFormer(backbone="swin_base_patch4_window12_384", pretrained=pretrained)
