"""Loading Python config modules (GeoSeg / nanoGPT style): a config is a module that builds objects.

``load_config`` executes the module, checks that the names a stage reads are present (all missing
names in one error, with close matches suggested for typos) and fills in the optional names'
defaults, so the stages read one flat namespace.
"""

import ast
import difflib
import hashlib
import importlib.util
import inspect
import os
import sys
import traceback
import types
from pathlib import Path
from types import SimpleNamespace

from geoseg.classes import CLASSES, IGNORE_INDEX
from geoseg.errors import ConfigError, GeoSegError

SUPERVISED_REQUIRED = (
    "net",
    "loss",
    "train_loader",
    "val_loader",
    "optimizer",
    "lr_scheduler",
    "max_epoch",
)
# Where a run writes: `run_name = "biodiversity/teacher"` gives weights_path
# "model_weights/biodiversity/teacher", weights_name "teacher-best" and log_name
# "biodiversity/teacher"; a config may set any of the three itself instead.
OUTPUT_NAMES = ("weights_path", "weights_name", "log_name")
WEIGHTS_ROOT = "model_weights"

# Optional names and their defaults. ``precision=None`` means: bf16-mixed where the GPU supports it,
# 32-true otherwise (see geoseg.training.run.default_precision).
SUPERVISED_DEFAULTS = {
    # The class scheme (geoseg.classes); num_classes defaults to len(classes)
    "classes": CLASSES,
    "num_classes": None,
    "ignore_index": IGNORE_INDEX,
    "run_name": None,
    **dict.fromkeys(OUTPUT_NAMES),
    "monitor": "val_mIoU",
    "monitor_mode": "max",
    "check_val_every_n_epoch": 1,
    "pretrained_ckpt_path": None,
    # A training checkpoint to continue from, or "auto": the newest of <weights_path>/last.ckpt and
    # the checkpoint a SLURM pre-emption saved there, when one exists (a fresh start otherwise)
    "resume_ckpt_path": None,
    # Where metrics go: "tensorboard", "csv", "mlflow", "wandb" or a list of them (MLflow and
    # Weights & Biases need their own package)
    "logger": "tensorboard",
    # last.ckpt is also written every this many optimizer steps (0 or None: only every epoch)
    "checkpoint_every_n_steps": 500,
    "accelerator": "auto",
    "devices": "auto",
    "num_nodes": 1,
    "strategy": "auto",
    # BatchNorm statistics over the batches of all processes (DDP only; the decoder's BN layers)
    "sync_batchnorm": False,
    "precision": None,
    # Same seed, same numbers: deterministic kernels wherever PyTorch has one (see
    # geoseg.training.run.trainer_determinism for what stays non-deterministic on CUDA)
    "deterministic": False,
    # torch.compile the network (and the KD teacher): True, or a dict of torch.compile arguments
    "compile": False,
    # Batch-level mixing of training batches: CutMix, ClassMix or MixUp from geoseg.datasets
    "batch_mix": None,
    "accumulate_grad_batches": 1,
    "gradient_clip_val": None,
    # Colours of the classes in logged pictures and saved in checkpoints (default: PALETTE for
    # the six target classes, distinct hues for another scheme)
    "palette": None,
    # Set on the network now (its `normalization` argument); accepted here when it agrees
    "normalization": None,
    "log_every_n_steps": 10,
    "num_logged_images": 4,
}

# The KD knobs and their defaults (the recipe's). kd_alpha weights the supervised term:
# loss = kd_alpha * supervised + (1 - kd_alpha) * KD.
KD_SETTINGS = {
    "kd_temperature": 3.0,
    "kd_alpha": 0.7,
    "kd_confidence_threshold": 0.5,
    "kd_warmup_epochs": 5,
}
# The KD stage's config names: the supervised ones, the teacher and the knobs.
KD_REQUIRED = (*SUPERVISED_REQUIRED, "teacher_ckpt_path")
KD_DEFAULTS = {**SUPERVISED_DEFAULTS, **KD_SETTINGS}
KD_NAMES = ("teacher_ckpt_path", *KD_SETTINGS)
# Every name some stage reads: a config name close to one of these is taken for a typo.
STAGE_NAMES = (*KD_REQUIRED, *KD_DEFAULTS)

# The precisions Lightning's Trainer takes (None: bf16-mixed on GPUs with bf16, 32-true elsewhere)
PRECISIONS = (
    "32-true",
    "16-mixed",
    "bf16-mixed",
    "16-true",
    "bf16-true",
    "64-true",
    "transformer-engine",
    "transformer-engine-float16",
    # older spellings Lightning still accepts
    "32",
    "16",
    "bf16",
    "64",
    32,
    16,
    64,
)

# Names that only the stage reads, never an object the config builds from them, so they can be
# overridden on the command line without leaving a built object
# (an optimizer, a scheduler, a data loader) out of step. Everything else is changed in the file.
OVERRIDABLE = (
    "run_name",
    "weights_path",
    "weights_name",
    "log_name",
    "pretrained_ckpt_path",
    "resume_ckpt_path",
    "teacher_ckpt_path",
    "logger",
    "deterministic",
    "accelerator",
    "devices",
    "num_nodes",
    "strategy",
    "precision",
    "compile",
    "checkpoint_every_n_steps",
    "log_every_n_steps",
    "num_logged_images",
)


def parse_overrides(items: list[str] | None) -> dict:
    """``["name=value", ...]`` -> ``{name: value}``; values are Python literals, else strings."""
    overrides = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        if not sep or not name.isidentifier():
            raise ConfigError(f"{item!r}: expected NAME=VALUE, e.g. weights_path=runs/seed_1")
        try:
            overrides[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            overrides[name] = text
    return overrides


def load_config(
    path: str | os.PathLike,
    required: tuple[str, ...] = SUPERVISED_REQUIRED,
    defaults: dict | None = None,
    overrides: dict | None = None,
) -> SimpleNamespace:
    """Execute the config module at ``path`` and return its public names with defaults filled in.

    ``overrides`` (name -> value) replace the config's values afterwards; only names in
    ``OVERRIDABLE`` are accepted.
    """
    path = Path(path)
    defaults = SUPERVISED_DEFAULTS if defaults is None else defaults
    names = config_names(path)
    overrides = overrides or {}
    _check_stage(path, required, {**names, **overrides})

    missing = [name for name in required if name not in names]
    if missing:
        hints = []
        for name in missing:
            close = difflib.get_close_matches(name, names, n=1, cutoff=0.8)
            if close:
                hints.append(f"'{close[0]}' -> did you mean '{name}'?")
        hint = f" ({'; '.join(hints)})" if hints else ""
        raise ConfigError(f"{path}: missing required names: {', '.join(missing)}{hint}")

    for name, value in names.items():
        if name in STAGE_NAMES or is_definition(value):
            continue
        close = difflib.get_close_matches(name, STAGE_NAMES, n=1, cutoff=0.85)
        if close and close[0] not in names:
            raise ConfigError(f"{path}: unknown name '{name}'; did you mean '{close[0]}'?")
        if close:
            raise ConfigError(f"{path}: {name}: no stage reads it; did you mean {close[0]}?")

    unknown = [name for name in overrides if name not in names and name not in defaults]
    unknown = [name for name in unknown if name not in required]
    if unknown:
        close = difflib.get_close_matches(unknown[0], [*OVERRIDABLE, *names], n=1, cutoff=0.6)
        hint = (
            f" (did you mean {close[0]}?)" if close else f" (overridable: {', '.join(OVERRIDABLE)})"
        )
        raise ConfigError(
            f"--set {', '.join(unknown)}: no such name in config {path} or among the stage's "
            f"names{hint}"
        )
    refused = sorted(set(overrides) - set(OVERRIDABLE))
    if refused:
        raise ConfigError(
            f"{path}: cannot override {', '.join(refused)} from the command line: the config may "
            f"have built objects from them (loaders, optimizer, scheduler); edit the file instead. "
            f"Overridable: {', '.join(OVERRIDABLE)}"
        )
    settings = {**names, **overrides}
    if "run_name" in overrides:  # a run name given on the command line moves every output
        settings = {k: v for k, v in settings.items() if k not in OUTPUT_NAMES or k in overrides}
    config = SimpleNamespace(**{**defaults, **settings})
    config.config_path = str(path)
    _derive_outputs(config, settings)
    _check_class_scheme(config)
    if config.precision is not None and config.precision not in PRECISIONS:
        raise ConfigError(
            f"{path}: precision {config.precision!r}: expected None (automatic) or one of "
            f"{', '.join(map(str, PRECISIONS[:6]))}"
        )
    return config


def config_names(path: str | os.PathLike) -> dict:
    """Execute the config module at ``path``; its public names. A missing file, or a line of it
    that fails, is a ConfigError naming the file (and the line)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    module = _execute(path)
    return {key: value for key, value in vars(module).items() if not key.startswith("_")}


def _check_stage(path: Path, required: tuple[str, ...], settings: dict) -> None:
    """A distillation config belongs to train_kd.py, any other to train_supervision.py."""
    if "teacher_ckpt_path" in required:
        if "teacher_ckpt_path" not in settings:
            raise ConfigError(
                f"{path}: no teacher_ckpt_path, so this is not a distillation config: train it "
                "with train_supervision.py, or set teacher_ckpt_path to the teacher's checkpoint"
            )
        return
    kd_names = [name for name in KD_NAMES if name in settings]
    if kd_names:
        raise ConfigError(
            f"{path}: sets {', '.join(kd_names)}, so this is a distillation config: train it with "
            "train_kd.py"
        )


def run_outputs(run_name: str) -> dict[str, str]:
    """weights_path, weights_name and log_name of a run name such as "biodiversity/teacher"."""
    return {
        "weights_path": f"{WEIGHTS_ROOT}/{run_name}",
        "weights_name": f"{Path(run_name).name}-best",
        "log_name": run_name,
    }


def _derive_outputs(config: SimpleNamespace, settings: dict) -> None:
    """Fill the output names the config did not set from its run_name."""
    if config.run_name:
        for name, value in run_outputs(config.run_name).items():
            if name not in settings or settings[name] is None:
                setattr(config, name, value)
    missing = [name for name in OUTPUT_NAMES if not getattr(config, name)]
    if missing:
        raise ConfigError(
            f"{config.config_path}: missing required names: {', '.join(missing)} (or set "
            'run_name, e.g. run_name = "biodiversity/teacher", from which they follow)'
        )


def _check_class_scheme(config: SimpleNamespace) -> None:
    config.classes = tuple(config.classes)
    if config.num_classes is None:
        config.num_classes = len(config.classes)
    elif config.num_classes != len(config.classes):
        raise ConfigError(
            f"{config.config_path}: num_classes = {config.num_classes} but classes names "
            f"{len(config.classes)}: {', '.join(config.classes)}"
        )
    if config.palette is not None and len(config.palette) != len(config.classes):
        raise ConfigError(
            f"{config.config_path}: palette has {len(config.palette)} colours for "
            f"{len(config.classes)} classes; give one (R, G, B) per class"
        )


def _execute(path: Path) -> types.ModuleType:
    """Run the config file as a module of a package made for its folder, so that a config can
    import the shared blocks beside it (``from .kd_student import *``) wherever it is run from."""
    folder = path.resolve().parent
    package = "geoseg_configs_" + hashlib.sha1(str(folder).encode()).hexdigest()[:12]
    if package not in sys.modules:
        namespace = types.ModuleType(package)
        namespace.__path__ = [str(folder)]
        sys.modules[package] = namespace
    # Shared blocks run afresh with every config: their objects belong to this load (its working
    # folder, its seed), and an edited block is read again.
    for name in [name for name in sys.modules if name.startswith(f"{package}.")]:
        del sys.modules[name]
    module_name = f"{package}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs so that dataclasses/pickling inside the config can find the module.
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except GeoSegError:
        raise  # bad data or a bad value the config's own objects found: their message says where
    except SyntaxError as error:
        where = _shown(path, Path(error.filename or path))
        raise ConfigError(f"{where}, line {error.lineno}: SyntaxError: {error.msg}") from error
    except Exception as error:
        raise ConfigError(f"{_failing_line(path, error)}: {_one_line(error)}") from error
    return module


def _failing_line(path: Path, error: Exception) -> str:
    """Where the deepest frame in the config's folder (the config or a block beside it) was."""
    folder = path.resolve().parent
    where = f"{path}, line ?"
    for frame, lineno in traceback.walk_tb(error.__traceback__):
        file = Path(frame.f_code.co_filename).resolve()
        if file.parent == folder:
            where = f"{_shown(path, file)}, line {lineno}"
    return where


def _shown(path: Path, file: Path) -> str:
    """``file`` as the user named its folder: the config's path, or a block beside it."""
    return str(path) if file.resolve() == path.resolve() else str(path.parent / file.name)


def _one_line(error: Exception) -> str:
    """``Type: first line of the message``."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def is_definition(value) -> bool:
    """Imported modules, classes and functions are tools of the config, not settings."""
    return inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value)
