"""Demo step 1 for another ensemble member: a small SegFormer, as
config/biodiversity/segformer_step1_pretrain_combined.py at CPU size.

Run: python train_supervision.py -c config/demo/segformer_step1_pretrain_combined.py
Data, loss and schedule are the demo FT-UNetFormer's step 1 (pretrain_combined.py).
"""

from .pretrain_combined import *  # noqa: F403
from .pretrain_combined import lr, max_epoch, optimisation
from .student import segformer_student

run_name = "demo/segformer_pretrain_all"

net = segformer_student()  # from scratch
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
