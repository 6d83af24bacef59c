"""Step 1 for another ensemble member: SegFormer (PVT-v2-B2) on target + OpenEarthMap data.

Run:    python train_supervision.py -c config/biodiversity/segformer_step1_pretrain_combined.py
Output: model_weights/biodiversity/segformer_pretrain_all/last.ckpt (segformer_step2 starts from it)
Data, loss and schedule are the FT-UNetFormer's step 1 (pretrain_combined.py).
"""

from .pretrain_combined import *  # noqa: F403
from .pretrain_combined import lr, max_epoch, optimisation
from .student import segformer_student

run_name = "biodiversity/segformer_pretrain_all"

net = segformer_student(pretrained=True)  # backbone from student.SEGFORMER_BACKBONE_WEIGHTS
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
