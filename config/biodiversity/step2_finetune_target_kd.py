"""Step 2: fine-tune the step 1 student on the target data with knowledge distillation.

Run:    python train_kd.py -c config/biodiversity/step2_finetune_target_kd.py
Needs:  model_weights/biodiversity/student_pretrain_all/last.ckpt (step1_pretrain_combined.py)
        and model_weights/biodiversity/teacher/last.ckpt (teacher.py)
Output: model_weights/biodiversity/student_ft_target_kd/last.ckpt
Data, loss, KD settings and schedule are the baseline's (kd_student.py): the two runs differ only
in the initialisation, so comparing them measures step 1.
"""

from .kd_student import *  # noqa: F403
from .kd_student import lr, max_epoch, optimisation
from .student import student

run_name = "biodiversity/student_ft_target_kd"

net = student(pretrained=False)  # every weight comes from step 1:
pretrained_ckpt_path = "model_weights/biodiversity/student_pretrain_all/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
