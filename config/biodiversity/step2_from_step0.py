"""Step 2 after steps 0 and 1: step2_finetune_target_kd.py exactly, started from the step 1 student
that step 0 initialised.

Needs:  model_weights/biodiversity/student_pretrain_all_from_step0/last.ckpt (step1_from_step0.py)
        and model_weights/biodiversity/teacher/last.ckpt (teacher.py)
Run:    python train_kd.py -c config/biodiversity/step2_from_step0.py
Output: model_weights/biodiversity/student_ft_target_kd_from_step0/last.ckpt; against step 2's
        student_ft_target_kd it measures step 0
"""

from .step2_finetune_target_kd import *  # noqa: F403

run_name = "biodiversity/student_ft_target_kd_from_step0"

pretrained_ckpt_path = "model_weights/biodiversity/student_pretrain_all_from_step0/last.ckpt"
