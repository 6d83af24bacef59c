"""The demo student of step 1, the baseline and step 2: one architecture, so step 2 can start
from step 1's weights."""

from geoseg.models import FTUNetFormer


def student() -> FTUNetFormer:
    """A Swin with 1-2 blocks per stage and 32-channel embedding, trained from scratch."""
    return FTUNetFormer(
        backbone="swin_tiny_patch4_window7_224",
        backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]},
        decode_channels=32,
        window_size=4,
    )
