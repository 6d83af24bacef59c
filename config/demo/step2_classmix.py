"""Ablation lever: demo step 2 with ClassMix on the training batches, nothing else changed.

Run:   python train_kd.py -c config/demo/step2_classmix.py (needs what step 2 needs)
Each image, with probability 0.5, gets the pixels of half the classes of another image of its
batch pasted on it, their labels with them; the teacher sees the mixed images.
"""

from geoseg.datasets import ClassMix

from .step2_finetune_target_kd import *  # noqa: F403

run_name = "demo/student_ft_target_kd_classmix"

batch_mix = ClassMix(p=0.5)
