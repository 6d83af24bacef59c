"""Step 1 for another ensemble member: UPerNet (ConvNeXt-Tiny) on target + OpenEarthMap data.

Run:    python train_supervision.py -c config/biodiversity/upernet_step1_pretrain_combined.py
Output: model_weights/biodiversity/upernet_pretrain_all/last.ckpt (upernet_step2 starts from it)
Data, loss and schedule are the FT-UNetFormer's step 1 (pretrain_combined.py).
"""

from .pretrain_combined import *  # noqa: F403
from .pretrain_combined import lr, max_epoch, optimisation
from .student import upernet_student

run_name = "biodiversity/upernet_pretrain_all"

net = upernet_student(pretrained=True)  # backbone from student.UPERNET_BACKBONE_WEIGHTS
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
