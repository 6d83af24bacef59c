"""Supervised training stage: ``python train_supervision.py -c config/biodiversity/teacher.py``.

Trains the config's ``net`` with its ``loss`` and writes ``<weights_path>/last.ckpt`` plus the best
checkpoint by ``monitor``; TensorBoard logs go to ``lightning_logs/<log_name>``.
"""

import pytorch_lightning as pl

from geoseg.training import train
from geoseg.utils.cli import run_script, stage_argument_parser
from geoseg.utils.config import load_config, parse_overrides


def main() -> None:
    args = stage_argument_parser(__doc__.splitlines()[0]).parse_args()
    pl.seed_everything(args.seed, workers=True)
    train(load_config(args.config, overrides=parse_overrides(args.set)))


if __name__ == "__main__":
    run_script(main)
