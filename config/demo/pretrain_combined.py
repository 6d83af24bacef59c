"""What every demo step 1 shares (config/biodiversity/pretrain_combined.py at CPU size): the
synthetic target + OpenEarthMap data, loss and schedule. Not a stage config.

Prepare: python -m geoseg.datasets.synthetic --output-root data/demo
         python create_combined_dataset.py --target-root data/demo/biodiversity \
             --oem-root data/demo/OpenEarthMap --output-root data/demo/biodiversity_combined \
             --target-gsd 1.0
The ablation's step 1 levers (step1_<lever>.py) use this with other options or other builds.
"""

from geoseg.datasets import BiodiversityCombinedDataset, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders

from .pretraining import *  # noqa: F403

target_root = "data/demo/biodiversity"
combined_root = "data/demo/biodiversity_combined"


def combined_data(root: str = combined_root, **loader_options):
    """(train_loader, val_loader, loss) on the combined set at ``root``: validation on the
    target's Val (primary) and the combined Val; CE + Dice, whose CE is the partial-label one on a
    build with label sets. ``loader_options`` go to data_loaders (e.g. target_share=0.5)."""
    train_set = BiodiversityCombinedDataset(root, "Train", transform=train_transform(64))
    loaders = data_loaders(
        train_set,
        {
            "target": TargetDataset(target_root, "Val"),
            "oem": BiodiversityCombinedDataset(root, "Val"),
        },
        batch_size=8,
        num_workers=2,
        **loader_options,
    )
    return (*loaders, CEDiceLoss(label_sets=train_set.label_sets))


train_loader, val_loader, loss = combined_data()

# optimisation() and the hardware: pretraining.py
max_epoch = 20
lr = 2e-3
