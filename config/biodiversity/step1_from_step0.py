"""Step 1 started from step 0: step1_pretrain_combined.py exactly, every weight from the student
pretrained on map labels instead of ImageNet's backbone and a new decoder.

Needs:  model_weights/biodiversity/student_pretrain_map_labels/last.ckpt
        (step0_pretrain_map_labels.py) and step 1's data (python create_combined_dataset.py)
Run:    python train_supervision.py -c config/biodiversity/step1_from_step0.py
Output: model_weights/biodiversity/student_pretrain_all_from_step0/last.ckpt (step2_from_step0.py
        starts from it)
"""

from .pretrain_combined import *  # noqa: F403
from .pretrain_combined import lr, max_epoch, optimisation
from .student import student

run_name = "biodiversity/student_pretrain_all_from_step0"

net = student(pretrained=False)  # every weight comes from step 0:
pretrained_ckpt_path = "model_weights/biodiversity/student_pretrain_map_labels/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
