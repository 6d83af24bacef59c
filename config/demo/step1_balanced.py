"""Ablation lever: demo step 1 with domain-balanced batches, nothing else changed.

Run: python train_supervision.py -c config/demo/step1_balanced.py
Half of every batch is target tiles, half second-domain tiles, whatever the two sets' sizes (the
target tiles then repeat within an epoch); step 1 as shipped draws them in proportion to their
tile counts (about a third target in the demo).
"""

from .pretrain_combined import combined_data
from .step1_pretrain_combined import *  # noqa: F403

run_name = "demo/student_pretrain_balanced"

train_loader, val_loader, loss = combined_data(target_share=0.5)
