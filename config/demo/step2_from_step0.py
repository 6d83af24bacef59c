"""Demo step 2 after demo steps 0 and 1: step2_finetune_target_kd.py exactly, started from
model_weights/demo/student_pretrain_all_from_step0/last.ckpt (step1_from_step0.py).

Run:    python train_kd.py -c config/demo/step2_from_step0.py (needs the demo teacher too)
Output: model_weights/demo/student_ft_target_kd_from_step0/last.ckpt
"""

from .step2_finetune_target_kd import *  # noqa: F403

run_name = "demo/student_ft_target_kd_from_step0"

pretrained_ckpt_path = "model_weights/demo/student_pretrain_all_from_step0/last.ckpt"
