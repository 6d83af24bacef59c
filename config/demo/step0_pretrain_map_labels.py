"""Demo step 0: config/biodiversity/step0_pretrain_map_labels.py at CPU size, on synthetic map
labels.

Prepare: python -m geoseg.datasets.synthetic --output-root data/demo (the target, whose Val
         validates), and the demo's synthetic weak labels in data/demo/map_labels/Train
Run:     python train_supervision.py -c config/demo/step0_pretrain_map_labels.py
Output:  model_weights/demo/student_pretrain_map_labels/last.ckpt (step1_from_step0.py starts
         from it, then step2_from_step0.py)
Cheaper than demo step 1 (8 epochs against 20); the loss is the real one, its warm-up scaled.
"""

from geoseg.datasets import TargetDataset, train_transform
from geoseg.losses import TruncatedCrossEntropyLoss
from geoseg.training import data_loaders

from .pretraining import *  # noqa: F403
from .pretraining import optimisation
from .student import student

run_name = "demo/student_pretrain_map_labels"

map_labels_root = "data/demo/map_labels"
target_root = "data/demo/biodiversity"
train_loader, val_loader = data_loaders(
    TargetDataset(map_labels_root, "Train", transform=train_transform(64)),
    TargetDataset(target_root, "Val"),
    batch_size=8,
    num_workers=2,
)
loss = TruncatedCrossEntropyLoss(drop_fraction=0.2, warmup_epochs=2)

max_epoch = 8
lr = 2e-3

net = student()  # the demo student (a small Swin), from scratch
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
