"""Supervised training stage: ``python train_supervision.py -c config/biodiversity/teacher.py``.

Trains the config's ``net`` with its ``loss`` and writes ``<weights_path>/last.ckpt`` plus the best
checkpoint by ``monitor``; TensorBoard logs go to ``lightning_logs/<log_name>``.
"""

import argparse

import pytorch_lightning as pl

from geoseg.training import train
from geoseg.utils.cli import run_script
from geoseg.utils.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-c", "--config", required=True, help="path to a config module")
    parser.add_argument(
        "--seed", type=int, default=42, help="seed set before the config builds its objects"
    )
    args = parser.parse_args()
    pl.seed_everything(args.seed, workers=True)
    train(load_config(args.config))


if __name__ == "__main__":
    run_script(main)
