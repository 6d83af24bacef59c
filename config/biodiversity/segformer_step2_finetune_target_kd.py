"""Step 2 for another ensemble member: the SegFormer (PVT-v2-B2) of step 1 fine-tuned on the target data
with knowledge distillation.

Run:    python train_kd.py -c config/biodiversity/segformer_step2_finetune_target_kd.py
Needs:  model_weights/biodiversity/segformer_pretrain_all/last.ckpt
        (segformer_step1_pretrain_combined.py) and model_weights/biodiversity/teacher/last.ckpt
Output: model_weights/biodiversity/segformer_ft_target_kd/last.ckpt, an ensemble member:
        python ensemble_inference.py --checkpoints \
            model_weights/biodiversity/student_ft_target_kd/last.ckpt \
            model_weights/biodiversity/segformer_ft_target_kd/last.ckpt ...
Data, loss, KD settings and schedule are the FT-UNetFormer's step 2 (kd_student.py).
"""

from .kd_student import *  # noqa: F403
from .kd_student import lr, max_epoch, optimisation
from .student import segformer_student

run_name = "biodiversity/segformer_ft_target_kd"

net = segformer_student(pretrained=False)  # every weight comes from step 1:
pretrained_ckpt_path = "model_weights/biodiversity/segformer_pretrain_all/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
