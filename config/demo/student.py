"""The demo students, trained from scratch: the FT-UNetFormer of step 1, the baseline and step 2
(one architecture, so step 2 can start from step 1's weights), and small members of the other
families (segformer_*.py, upernet_*.py) of comparable size and step time."""

from geoseg.models import FTUNetFormer, SegFormer, UPerNet


def student() -> FTUNetFormer:
    """A Swin with 1-2 blocks per stage and 32-channel embedding."""
    return FTUNetFormer(
        backbone="swin_tiny_patch4_window7_224",
        backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]},
        decode_channels=32,
        window_size=4,
    )


def segformer_student() -> SegFormer:
    """A PVT-v2 with 1-2 blocks per stage, 32-256 channels, and a 64-wide SegFormer head."""
    return SegFormer(
        backbone="pvt_v2_b0",
        backbone_kwargs={
            "embed_dims": [32, 64, 128, 256],
            "depths": [1, 1, 2, 1],
            "num_heads": [1, 2, 4, 8],
        },
        embed_dim=64,
    )


def upernet_student() -> UPerNet:
    """A ConvNeXt with 1-2 blocks per stage, 32-256 channels, and a 64-channel UPerNet head."""
    return UPerNet(
        backbone="convnext_atto",
        backbone_kwargs={"dims": [32, 64, 128, 256], "depths": [1, 1, 2, 1]},
        channels=64,
        aux_channels=32,
    )
