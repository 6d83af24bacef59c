"""Demo baseline: config/biodiversity/student_target_only.py at CPU size, on the synthetic data.

Run:   python train_kd.py -c config/demo/student_target_only.py
Needs: model_weights/demo/teacher/last.ckpt (config/demo/teacher.py)
"""

from .kd_student import *  # noqa: F403
from .kd_student import lr, max_epoch, optimisation
from .student import student

run_name = "demo/student_target_only"

net = student()  # from scratch: no step 1, which is what the baseline measures
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
