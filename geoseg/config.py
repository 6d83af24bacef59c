"""Loading Python config modules (GeoSeg / nanoGPT style): a config is a module that builds objects.

``load_config`` executes the module, checks that the names a stage reads are present (all missing
names in one error, with close matches suggested for typos) and fills in the optional names'
defaults, so the stages read one flat namespace.
"""

import ast
import difflib
import importlib.util
import inspect
import os
import sys
from pathlib import Path
from types import SimpleNamespace

from geoseg.datasets.classes import IMAGENET_NORMALIZATION
from geoseg.errors import ConfigError

SUPERVISED_REQUIRED = (
    "num_classes",
    "classes",
    "ignore_index",
    "net",
    "loss",
    "train_loader",
    "val_loader",
    "optimizer",
    "lr_scheduler",
    "max_epoch",
    "weights_path",
    "weights_name",
    "log_name",
    "monitor",
    "monitor_mode",
)

# Optional names and their defaults. ``precision=None`` means: bf16-mixed where the GPU supports it,
# 32-true otherwise (see geoseg.training.run.default_precision).
SUPERVISED_DEFAULTS = {
    "check_val_every_n_epoch": 1,
    "pretrained_ckpt_path": None,
    "resume_ckpt_path": None,
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
    "accumulate_grad_batches": 1,
    "gradient_clip_val": None,
    "normalization": IMAGENET_NORMALIZATION,
    "log_every_n_steps": 10,
    "num_logged_images": 4,
}

# The knowledge-distillation stage (train_kd.py): the supervised names plus the teacher and the KD
# knobs (see DESIGN.md, "Knowledge distillation"). kd_alpha weights the supervised term.
KD_REQUIRED = (*SUPERVISED_REQUIRED, "teacher_ckpt_path")
KD_DEFAULTS = {
    **SUPERVISED_DEFAULTS,
    "kd_temperature": 3.0,
    "kd_alpha": 0.7,
    "kd_confidence_threshold": 0.5,
    "kd_warmup_epochs": 5,
}


# Names that only the stage reads, never an object the config builds from them, so they can be
# overridden on the command line (``--set weights_path=...``) without leaving a built object
# (an optimizer, a scheduler, a data loader) out of step. Everything else is changed in the file.
OVERRIDABLE = (
    "weights_path",
    "weights_name",
    "log_name",
    "pretrained_ckpt_path",
    "resume_ckpt_path",
    "teacher_ckpt_path",
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
            raise ConfigError(f"--set {item!r}: expected NAME=VALUE, e.g. weights_path=runs/seed_1")
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
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    module_name = f"geoseg_config_{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    # Registered while it runs so that dataclasses/pickling inside the config can find the module.
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    names = {key: value for key, value in vars(module).items() if not key.startswith("_")}

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
        if name in required or name in defaults or _is_definition(value):
            continue
        close = difflib.get_close_matches(name, [*required, *defaults], n=1, cutoff=0.85)
        if close and close[0] not in names:
            raise ConfigError(f"{path}: unknown name '{name}'; did you mean '{close[0]}'?")

    refused = sorted(set(overrides or {}) - set(OVERRIDABLE))
    if refused:
        raise ConfigError(
            f"{path}: cannot override {', '.join(refused)} from the command line: the config may "
            f"have built objects from them (loaders, optimizer, scheduler); edit the file instead. "
            f"Overridable: {', '.join(OVERRIDABLE)}"
        )
    config = SimpleNamespace(**{**defaults, **names, **(overrides or {})})
    config.config_path = str(path)
    return config


def _is_definition(value) -> bool:
    """Imported modules, classes and functions are tools of the config, not settings."""
    return inspect.ismodule(value) or inspect.isclass(value) or inspect.isroutine(value)
