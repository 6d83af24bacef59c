"""Demo step 3: config/biodiversity/step3_self_training.py at CPU size, on the synthetic data.

Prepare: python pseudo_label.py --input-dir data/demo/biodiversity/Unlabelled/images_png \
             --output-root data/demo/pseudo_labels/seed_<seed> --checkpoints ... (make ablation
             labels each seed's tiles with that seed's ensemble)
Run:     python train_kd.py -c config/demo/step3_self_training.py --seed <seed>
Needs:   model_weights/demo/student_ft_target_kd/last.ckpt (step 2) and the demo teacher
"""

from pathlib import Path

import torch

from geoseg.datasets import SelfTrainingDataset, TargetDataset, train_transform
from geoseg.errors import ConfigError
from geoseg.training import data_loaders

from .kd_student import *  # noqa: F403
from .kd_student import data_root, lr, max_epoch, optimisation
from .student import student

run_name = "demo/student_self_training"

# the pseudo-labels of this run's seed (the script seeds torch before it reads the config)
pseudo_root = f"data/demo/pseudo_labels/seed_{torch.initial_seed()}"
if not Path(pseudo_root).is_dir():
    raise ConfigError(
        f"{pseudo_root}: no pseudo-labels for seed {torch.initial_seed()}; --seed N reads "
        "data/demo/pseudo_labels/seed_N, which `python pseudo_label.py --input-dir "
        "data/demo/biodiversity/Unlabelled/images_png --output-root data/demo/pseudo_labels/seed_N "
        "--checkpoints ...` writes (make ablation does it per seed)"
    )
train_loader, val_loader = data_loaders(
    SelfTrainingDataset(
        TargetDataset(data_root, "Train", transform=train_transform(64)),
        TargetDataset(pseudo_root, "Train", transform=train_transform(64)),
        pseudo_share=0.5,
    ),
    TargetDataset(data_root, "Val"),
    batch_size=8,
    num_workers=2,
)

net = student()  # every weight comes from step 2:
pretrained_ckpt_path = "model_weights/demo/student_ft_target_kd/last.ckpt"
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
