"""Ablation lever: demo step 2 with rare-class crops, nothing else changed.

Run:   python train_kd.py -c config/demo/step2_rare_class_crops.py (needs what step 2 needs)
Half the training items come from a tile containing a class drawn uniformly among the classes of
Train (class-uniform sampling), their crop centred on one of its pixels where the tile allows; the
other half are the usual ones.
"""

from geoseg.datasets import RareClassCrop

from .kd_student import target_loaders
from .step2_finetune_target_kd import *  # noqa: F403

run_name = "demo/student_ft_target_kd_rare_class_crops"

train_loader, val_loader = target_loaders(rare_class_crop=RareClassCrop(p=0.5))
