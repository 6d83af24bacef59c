"""The command line every training stage shares: a config, a seed and overrides, then train."""

import pytorch_lightning as pl

from geoseg.cli import ArgumentParser
from geoseg.config import SUPERVISED_DEFAULTS, SUPERVISED_REQUIRED, load_config, parse_overrides
from geoseg.errors import ConfigError
from geoseg.training.run import train
from geoseg.training.supervised import SupervisedModule

DEFAULT_SEED = 42


def run_stage(
    description: str,
    module_class: type[SupervisedModule] = SupervisedModule,
    required: tuple[str, ...] | None = None,
    defaults: dict | None = None,
) -> None:
    """Parse the stage's arguments, seed everything, load the config and train ``module_class``
    (``required`` / ``defaults``: the config names the stage reads; None: the supervised ones)."""
    parser = ArgumentParser(description=description)
    parser.add_argument("-c", "--config", required=True, help="path to a config module")
    parser.add_argument(
        "--seed",
        type=int,
        default=DEFAULT_SEED,
        help="seed set before the config builds its objects (weights, shuffling, augmentation); "
        f"default {DEFAULT_SEED}",
    )
    parser.add_argument(
        "--set",
        nargs="+",
        default=[],
        metavar="NAME=VALUE",
        help="override a config name the stage reads, e.g. run_name=biodiversity/seed_2/teacher "
        "(run name and output paths, checkpoints to start from, hardware, deterministic)",
    )
    args = parser.parse_args()
    # quiet: a refused config is one line; geoseg.training.train logs --seed once its checks pass
    pl.seed_everything(args.seed, workers=True, verbose=False)
    required = SUPERVISED_REQUIRED if required is None else required
    defaults = SUPERVISED_DEFAULTS if defaults is None else defaults
    try:
        overrides = parse_overrides(args.set)
    except ConfigError as error:
        raise ConfigError(f"--set {error}") from error
    config = load_config(args.config, required, defaults, overrides)
    train(config, module_class)
