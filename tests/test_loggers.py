"""The ``logger`` config name: Lightning's loggers by name, optional packages only when chosen."""

import sys
from types import SimpleNamespace

import pytest
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

from geoseg.config import SUPERVISED_DEFAULTS
from geoseg.errors import ConfigError
from geoseg.training.run import LOG_ROOT, make_loggers


def config(logger):
    return SimpleNamespace(logger=logger, log_name="biodiversity/teacher", config_path="c.py")


def test_tensorboard_is_the_default_and_names_pick_lightnings_loggers():
    assert SUPERVISED_DEFAULTS["logger"] == "tensorboard"
    (tensorboard,) = make_loggers(config("tensorboard"))
    assert isinstance(tensorboard, TensorBoardLogger)
    assert tensorboard.save_dir == LOG_ROOT and tensorboard.name == "biodiversity/teacher"
    both = make_loggers(config(["tensorboard", "csv"]))
    assert [type(logger) for logger in both] == [TensorBoardLogger, CSVLogger]
    own = CSVLogger("elsewhere")
    assert make_loggers(config([own])) == [own]


@pytest.mark.parametrize(("name", "package"), [("mlflow", "mlflow"), ("wandb", "wandb")])
def test_an_optional_logger_without_its_package_is_one_named_error(monkeypatch, name, package):
    monkeypatch.setitem(sys.modules, package, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=f"logger='{name}' needs the {package} package"):
        make_loggers(config(name))


def test_an_unknown_logger_is_a_config_error():
    with pytest.raises(ConfigError, match="logger='neptune'; expected one of tensorboard, csv"):
        make_loggers(config("neptune"))
