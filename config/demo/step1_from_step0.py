"""Demo step 1 started from demo step 0: step1_pretrain_combined.py exactly, every weight from
model_weights/demo/student_pretrain_map_labels/last.ckpt (step0_pretrain_map_labels.py).

Run:    python train_supervision.py -c config/demo/step1_from_step0.py (needs what step 1 needs)
Output: model_weights/demo/student_pretrain_all_from_step0/last.ckpt (step2_from_step0.py)
"""

from .step1_pretrain_combined import *  # noqa: F403

run_name = "demo/student_pretrain_all_from_step0"

pretrained_ckpt_path = "model_weights/demo/student_pretrain_map_labels/last.ckpt"
