"""Ablation lever: demo step 2 with class-weighted cross-entropy, nothing else changed.

Run:   python train_kd.py -c config/demo/step2_class_weighted.py (needs what step 2 needs)
The weights: inverse square root of each class's pixel share in Train, mean 1
(python -m geoseg.datasets.stats --root data/demo/biodiversity --split Train prints every scheme).
"""

from geoseg.datasets import class_weights
from geoseg.losses import CEDiceLoss

from .kd_student import data_root
from .step2_finetune_target_kd import *  # noqa: F403

run_name = "demo/student_ft_target_kd_class_weighted"

loss = CEDiceLoss(class_weights=class_weights(data_root, "Train", "inverse_sqrt_frequency"))
