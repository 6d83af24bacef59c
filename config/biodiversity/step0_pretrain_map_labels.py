"""Step 0: pretrain the student (FT-UNetFormer, Swin-Base) on weak labels made from map data.

Prepare: the map-data stage (map_labels.py: scenes + an OpenStreetMap extract) writes the
         weak-label tiles to data/biodiversity_map_labels/Train/{images_png,masks_png}, with 255
         where no map feature says anything and in a band around class boundaries
Run:     python train_supervision.py -c config/biodiversity/step0_pretrain_map_labels.py
Output:  model_weights/biodiversity/student_pretrain_map_labels/last.ckpt, which step 1 starts
         from in step1_from_step0.py (then step 2 in step2_from_step0.py)
Validates on the target's Val, the real labels: val_mIoU and the best checkpoint say how far map
data alone gets. The schedule's shape and the resume rule are step 1's (pretraining.py).
"""

from geoseg.datasets import TargetDataset, train_transform
from geoseg.losses import TruncatedCrossEntropyLoss
from geoseg.training import data_loaders

from .pretraining import *  # noqa: F403
from .pretraining import optimisation
from .student import student

run_name = "biodiversity/student_pretrain_map_labels"

# --- data: weak labels to train on, the target's real labels to validate on --------------------
map_labels_root = "data/biodiversity_map_labels"
target_root = "data/biodiversity"
img_size = 512
train_loader, val_loader = data_loaders(
    TargetDataset(map_labels_root, "Train", transform=train_transform(img_size)),
    TargetDataset(target_root, "Val"),
    batch_size=2,  # per GPU, as step 1
    num_workers=4,
)

# --- loss: map labels are wrong in whole areas (a residential polygon over gardens and trees, all
# "settlement"; omissions; a map a few metres off). After the warm-up epochs, the drop_fraction of
# each batch's labelled pixels with the highest loss count for nothing (geoseg/losses/truncated.py
# says why this rather than label smoothing or bootstrapping). Cross-entropy alone: Dice scores
# whole class areas, wrong ones included. drop_fraction: about the share of wrong labels, 0.1-0.3;
# warmup_epochs: until val_mIoU stops climbing fast, 3-10.
loss = TruncatedCrossEntropyLoss(drop_fraction=0.2, warmup_epochs=5)

# --- optimisation: shorter than step 1's 50 epochs; the longer a network trains on noisy labels,
# the more of their noise it learns, and step 1 follows on better ones ---------------------------
max_epoch = 30
lr = 6e-4

# the student of steps 1 and 2, its Swin-Base from student.BACKBONE_WEIGHTS, a new decoder
net = student(pretrained=True)
optimizer, lr_scheduler = optimisation(net, lr, max_epoch)
