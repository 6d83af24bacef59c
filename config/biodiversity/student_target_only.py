"""Baseline: the step 2 student trained with KD on the target data alone, from ImageNet (no step 1).

Run:    python train_kd.py -c config/biodiversity/student_target_only.py
Needs:  model_weights/biodiversity/teacher/last.ckpt (config/biodiversity/teacher.py)
Output: model_weights/biodiversity/student_target_only/last.ckpt
The reference every later result is compared with: data, loss, KD settings and schedule are
those of step 2 (kd_student.py); only the initialisation differs.
"""

from .kd_student import *  # noqa: F403
from .kd_student import lr, max_epoch, optimisation
from .student import student

run_name = "biodiversity/student_target_only"

# Swin-Base from student.BACKBONE_WEIGHTS (timm's ImageNet weights or GeoSeg's stseg_base.pth)
net = student(pretrained=True)
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
