"""Knowledge-distillation stage: ``python train_kd.py -c config/biodiversity/step2_finetune_target_kd.py``.

Trains the config's ``net`` (initialised from ``pretrained_ckpt_path`` when given) with its supervised
``loss`` plus confidence-masked distillation from the frozen teacher at ``teacher_ckpt_path``, and
writes ``<weights_path>/last.ckpt`` plus the best checkpoint by ``monitor``; TensorBoard logs go to
``lightning_logs/<log_name>``. Takes the arguments of train_supervision.py.
"""

from geoseg.cli import run_script
from geoseg.training import KDModule
from geoseg.training.cli import run_stage
from geoseg.training.kd import KD_DEFAULTS, KD_REQUIRED

if __name__ == "__main__":
    run_script(lambda: run_stage(__doc__.splitlines()[0], KDModule, KD_REQUIRED, KD_DEFAULTS))
