"""Knowledge-distillation stage: ``python train_kd.py -c config/biodiversity/step2_finetune_target_kd.py``.

Trains the config's ``net`` (initialised from ``pretrained_ckpt_path`` when given) with its supervised
``loss`` plus confidence-masked distillation from the frozen teacher at ``teacher_ckpt_path``, and
writes ``<weights_path>/last.ckpt`` plus the best checkpoint by ``monitor``; TensorBoard logs go to
``lightning_logs/<log_name>``.
"""

import pytorch_lightning as pl

from geoseg.training import KDModule, train
from geoseg.utils.cli import run_script, stage_argument_parser
from geoseg.utils.config import KD_DEFAULTS, KD_REQUIRED, load_config, parse_overrides


def main() -> None:
    args = stage_argument_parser(__doc__.splitlines()[0]).parse_args()
    pl.seed_everything(args.seed, workers=True)
    overrides = parse_overrides(args.set)
    train(load_config(args.config, KD_REQUIRED, KD_DEFAULTS, overrides), KDModule)


if __name__ == "__main__":
    run_script(main)
