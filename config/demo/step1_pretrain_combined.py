"""Demo step 1: config/biodiversity/step1_pretrain_combined.py at CPU size, on the synthetic data.

Run: python train_supervision.py -c config/demo/step1_pretrain_combined.py
Data, loss and schedule: pretrain_combined.py (which says how to prepare the data).
"""

from .pretrain_combined import *  # noqa: F403
from .pretrain_combined import lr, max_epoch, optimisation
from .student import student

run_name = "demo/student_pretrain_all"

net = student()  # the demo student (a small Swin), from scratch
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
