"""Supervised training stage: ``python train_supervision.py -c config/biodiversity/teacher.py``.

Trains the config's ``net`` with its ``loss`` and writes ``<weights_path>/last.ckpt`` plus the best
checkpoint by ``monitor``; TensorBoard logs go to ``lightning_logs/<log_name>``.
"""

from geoseg.cli import run_script
from geoseg.training.cli import run_stage

if __name__ == "__main__":
    run_script(lambda: run_stage(__doc__.splitlines()[0]))
