"""Step 1: pretrain the student (FT-UNetFormer, Swin-Base) on target + OpenEarthMap data.

Prepare: python create_combined_dataset.py   (writes data/biodiversity_combined)
Run:     python train_supervision.py -c config/biodiversity/step1_pretrain_combined.py
Output:  model_weights/biodiversity/student_pretrain_all/last.ckpt (step 2 starts from it)
Data, loss and schedule: pretrain_combined.py.
"""

from .pretrain_combined import *  # noqa: F403
from .pretrain_combined import lr, max_epoch, optimisation
from .student import student

run_name = "biodiversity/student_pretrain_all"

# the student of step 2, its Swin-Base from student.BACKBONE_WEIGHTS (timm's ImageNet weights or
# GeoSeg's stseg_base.pth), a new decoder
net = student(pretrained=True)
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
