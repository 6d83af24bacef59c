"""Knowledge-distillation stage: ``python train_kd.py -c config/biodiversity/step2_finetune_target_kd.py``.

Trains the config's ``net`` (initialised from ``pretrained_ckpt_path`` when given) with its supervised
``loss`` plus confidence-masked distillation from the frozen teacher at ``teacher_ckpt_path``, and
writes ``<weights_path>/last.ckpt`` plus the best checkpoint by ``monitor``; TensorBoard logs go to
``lightning_logs/<log_name>``.
"""

import argparse

import pytorch_lightning as pl

from geoseg.training import KDModule, train
from geoseg.utils.cli import run_script
from geoseg.utils.config import KD_DEFAULTS, KD_REQUIRED, load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True, help="path to a config module")
    parser.add_argument(
        "--seed", type=int, default=42, help="seed set before the config builds its objects"
    )
    args = parser.parse_args()
    pl.seed_everything(args.seed, workers=True)
    train(load_config(args.config, KD_REQUIRED, KD_DEFAULTS), KDModule)


if __name__ == "__main__":
    run_script(main)
