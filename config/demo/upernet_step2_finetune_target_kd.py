"""Demo step 2 for another ensemble member: the small UPerNet of step 1 fine-tuned on the target
data with KD, as config/biodiversity/upernet_step2_finetune_target_kd.py at CPU size.

Run:   python train_kd.py -c config/demo/upernet_step2_finetune_target_kd.py
Needs: model_weights/demo/upernet_pretrain_all/last.ckpt (upernet_step1_pretrain_combined.py)
       and model_weights/demo/teacher/last.ckpt (teacher.py)
Data, loss, KD settings and schedule are the demo FT-UNetFormer's step 2 (kd_student.py).
"""

from .kd_student import *  # noqa: F403
from .kd_student import lr, max_epoch, optimisation
from .student import upernet_student

run_name = "demo/upernet_ft_target_kd"

net = upernet_student()  # every weight comes from step 1:
pretrained_ckpt_path = "model_weights/demo/upernet_pretrain_all/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
