"""Step 3: self-training. The step 2 student trained on the target Train tiles plus the unlabelled
target tiles the ensemble pseudo-labelled, with KD as in step 2; validated on the target Val only.

Prepare: python pseudo_label.py --input-dir data/biodiversity/Unlabelled/images_png \
             --output-root data/biodiversity_pseudo --checkpoints \
             model_weights/biodiversity/student_target_only/last.ckpt \
             model_weights/biodiversity/student_ft_target_kd/last.ckpt
Run:     python train_kd.py -c config/biodiversity/step3_self_training.py
Needs:   model_weights/biodiversity/student_ft_target_kd/last.ckpt (step 2) and the teacher
Output:  model_weights/biodiversity/student_self_training/last.ckpt (a second round: add it to
         the pseudo_label.py ensemble, label into a new folder, point pseudo_root there)
Loss, KD settings and schedule are step 2's (kd_student.py); the pseudo-labels' ignore pixels
(below the confidence threshold) are left out of the loss.
"""

from geoseg.datasets import SelfTrainingDataset, TargetDataset, train_transform
from geoseg.training import data_loaders

from .kd_student import *  # noqa: F403
from .kd_student import data_root, img_size, lr, max_epoch, optimisation
from .student import student

run_name = "biodiversity/student_self_training"

pseudo_root = "data/biodiversity_pseudo"  # pseudo_label.py --output-root
train_loader, val_loader = data_loaders(
    SelfTrainingDataset(
        TargetDataset(data_root, "Train", transform=train_transform(img_size)),
        TargetDataset(pseudo_root, "Train", transform=train_transform(img_size)),
        pseudo_share=0.5,  # of each epoch's tiles; None: every pseudo-labelled tile once
    ),
    TargetDataset(data_root, "Val"),
    batch_size=2,  # per GPU, as step 2
    num_workers=4,
)

net = student(pretrained=False)  # every weight comes from step 2:
pretrained_ckpt_path = "model_weights/biodiversity/student_ft_target_kd/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
