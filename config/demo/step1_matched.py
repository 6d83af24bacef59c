"""Ablation lever: demo step 1 on a build whose second domain is resized to the target's ground
sampling distance, nothing else changed.

Prepare: python create_combined_dataset.py --target-root data/demo/biodiversity \
             --oem-root data/demo/OpenEarthMap \
             --output-root data/demo/biodiversity_combined_matched --target-gsd 1.0 --oem-scale auto
Run:     python train_supervision.py -c config/demo/step1_matched.py
"""

from .pretrain_combined import combined_data
from .step1_pretrain_combined import *  # noqa: F403

run_name = "demo/student_pretrain_matched"

train_loader, val_loader, loss = combined_data("data/demo/biodiversity_combined_matched")
