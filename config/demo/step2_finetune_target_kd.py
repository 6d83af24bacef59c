"""Demo step 2: config/biodiversity/step2_finetune_target_kd.py at CPU size, on the synthetic data.

Run:   python train_kd.py -c config/demo/step2_finetune_target_kd.py
Needs: model_weights/demo/student_pretrain_all/last.ckpt (config/demo/step1_pretrain_combined.py)
       and model_weights/demo/teacher/last.ckpt (config/demo/teacher.py)
"""

from .kd_student import *  # noqa: F403
from .kd_student import lr, max_epoch, optimisation
from .student import student

run_name = "demo/student_ft_target_kd"

net = student()  # every weight comes from step 1:
pretrained_ckpt_path = "model_weights/demo/student_pretrain_all/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
