"""Ablation lever: demo step 2 with CE + Lovász-softmax (a surrogate of IoU) in place of CE + Dice,
nothing else changed.

Run:   python train_kd.py -c config/demo/step2_lovasz.py (needs what step 2 needs)
"""

from geoseg.losses import CEDiceLoss

from .step2_finetune_target_kd import *  # noqa: F403

run_name = "demo/student_ft_target_kd_lovasz"

loss = CEDiceLoss(dice_weight=0.0, lovasz_weight=1.0)
