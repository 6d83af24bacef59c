"""Ablation lever: demo step 1 on a build with a partial remap, nothing else changed: the second
domain's rangeland (trees and grass alike) is "forest or grassland", trained with the
partial-label loss, and its bareland (desert, which the target does not have) is ignored.

Prepare: python create_combined_dataset.py --target-root data/demo/biodiversity \
             --oem-root data/demo/OpenEarthMap \
             --output-root data/demo/biodiversity_combined_partial --target-gsd 1.0 \
             --remap '255,255,1|2,4,4,1,5,3,4'
Run:     python train_supervision.py -c config/demo/step1_partial.py
"""

from .pretrain_combined import combined_data
from .step1_pretrain_combined import *  # noqa: F403

run_name = "demo/student_pretrain_partial"

train_loader, val_loader, loss = combined_data("data/demo/biodiversity_combined_partial")
