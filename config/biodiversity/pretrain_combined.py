"""What every step 1 shares: target + OpenEarthMap data, loss and schedule.

Not a stage config itself: step1_pretrain_combined.py (FT-UNetFormer) and the other
architectures' step 1 configs import it and add their network, so that they differ in nothing else.
Validates on the target Val split (logged as val_*, the checkpoint monitor: what step 2 is for)
and on the OpenEarthMap Val of the combined set (logged as val_oem_*).
"""

from geoseg.datasets import BiodiversityCombinedDataset, TargetDataset, train_transform
from geoseg.losses import CEDiceLoss
from geoseg.training import data_loaders

from .pretraining import *  # noqa: F403

# --- data ---------------------------------------------------------------------------------------
target_root = "data/biodiversity"
combined_root = "data/biodiversity_combined"  # Train: target_* links + oem_* tiles, Val: oem_*
img_size = 512


def combined_data(root: str = combined_root, **loader_options):
    """(train_loader, val_loader, loss) on the combined set at ``root``.

    Validation: the target's Val first (the primary one, val_mIoU), then the combined Val
    (val_oem_*). The loss is CE + Dice (+ 0.4 x CE on the auxiliary head of the networks that have
    one, UPerNet); on a build whose remap has label sets ("one of these" classes) its CE is the
    partial-label cross-entropy. ``loader_options`` go to data_loaders, e.g. target_share=0.5.
    """
    train_set = BiodiversityCombinedDataset(root, "Train", transform=train_transform(img_size))
    loaders = data_loaders(
        train_set,
        {
            "target": TargetDataset(target_root, "Val"),
            "oem": BiodiversityCombinedDataset(root, "Val"),
        },
        batch_size=2,  # per GPU, as in the recipe
        num_workers=4,
        **loader_options,
    )
    return (*loaders, CEDiceLoss(label_sets=train_set.label_sets))


train_loader, val_loader, loss = combined_data()
# When the second dataset hurts (another sensor, continent or label scheme): read the pre-flight
# that create_combined_dataset.py prints and saves (<combined_root>/preflight.json), then try
# - domain balance: as many target as OpenEarthMap tiles in every batch, whatever the sizes
#     train_loader, val_loader, loss = combined_data(target_share=0.5)
# - resolution matching: build with --oem-scale auto (and --target-gsd <metres> for PNG tiles)
# - a partial remap: a class that covers two of yours becomes "one of these", one you do not have
#   becomes ignore, e.g. rangeland -> forest or grassland, bareland -> ignore:
#     python create_combined_dataset.py --remap '255,255,1|2,4,4,1,5,3,4' ...
# - step 2 from step 1's best checkpoint on the target's Val instead of its last.ckpt
#   (step2_finetune_target_kd.py: pretrained_ckpt_path)
# Class imbalance and mixing: the levers of kd_student.py work here too, with the statistics of
# the combined Train split, e.g. (from geoseg.datasets import class_weights)
#   loss = CEDiceLoss(class_weights=class_weights(combined_root, "Train", "inverse_sqrt_frequency"))
# (class weights need a build without label sets: a set pixel has no single class to weight)

# --- optimisation -------------------------------------------------------------------------------
# optimisation() (AdamW, the backbone 10x slower) and the resume rule: pretraining.py
max_epoch = 50
lr = 6e-4
