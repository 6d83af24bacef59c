"""Build a timm model with timm's pretrained weights; a failure to fetch them is one clear error.

``create_pretrained(name, pretrained=True, **kwargs)`` calls ``timm.create_model``. When the
weights cannot be downloaded and are not in the local cache (a node without internet, or
``HF_HUB_OFFLINE=1``), it raises a ``CheckpointError`` that names the backbone, the folder timm
looked in (the Hugging Face hub cache for weights published there, torch hub's ``checkpoints``
folder for weights given by url only, or the ``cache_dir`` passed) and the two fixes: fill that
cache once on a machine with network, or give a local weights file (``pretrained="/path/…"``).
Only network and cache-miss failures are translated; any other error (a wrong argument, an
unknown model name) is raised as it is.
"""

import contextlib
import difflib
import importlib
import os
import socket
import urllib.error
from typing import Any

import timm
import torch
from torch import nn

from geoseg.errors import CheckpointError, ConfigError

__all__ = ["WEIGHTS_FETCH_ERRORS", "create_pretrained", "weights_cache_folder"]


def _fetch_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean "the weights could not be fetched" (no network, offline mode, not
    cached), from the libraries timm downloads with, where they are installed."""
    errors: list[type[BaseException]] = [
        urllib.error.URLError,  # torch hub's download (url-only weights)
        ConnectionError,  # includes huggingface_hub's OfflineModeIsEnabled
        TimeoutError,  # socket.timeout
        socket.gaierror,  # name resolution
        socket.herror,
    ]
    optional = (
        # huggingface_hub: a cache miss when the hub cannot be reached (offline mode, no network,
        # hub down), and offline mode itself
        ("huggingface_hub.errors", ("LocalEntryNotFoundError", "OfflineModeIsEnabled")),
        # the HTTP clients huggingface_hub is built on, by version: transport errors (connect,
        # timeout, proxy, connection dropped mid-download)
        ("httpx2", ("TransportError",)),
        ("httpx", ("TransportError",)),
        ("requests.exceptions", ("ConnectionError", "Timeout")),
    )
    for module_name, names in optional:
        with contextlib.suppress(ImportError):
            module = importlib.import_module(module_name)
            errors.extend(getattr(module, name) for name in names if hasattr(module, name))
    return tuple(errors)


WEIGHTS_FETCH_ERRORS = _fetch_errors()


def weights_cache_folder(name: str, cache_dir: str | os.PathLike | None = None) -> str:
    """The folder timm looks in for the pretrained weights of model ``name``."""
    if cache_dir:
        return str(cache_dir)
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError:  # an unknown weights tag: timm says so itself when building
        cfg = None
    if cfg is None or getattr(cfg, "hf_hub_id", None):
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    return os.path.join(torch.hub.get_dir(), "checkpoints")


def _fetch_failed(name: str, folder: str, error: BaseException) -> CheckpointError:
    from huggingface_hub import constants

    from_hub = type(error).__module__.startswith("huggingface_hub")
    why = "HF_HUB_OFFLINE is set" if from_hub and constants.HF_HUB_OFFLINE else type(error).__name__
    return CheckpointError(
        f"cannot load timm's pretrained weights of backbone '{name}': they could not be "
        f"downloaded ({why}) and are not in the cache folder {folder}. "
        "Run once on a machine with network "
        f"`python -c \"import timm; timm.create_model('{name}', pretrained=True)\"` and copy "
        "that folder to this one (or set HF_HOME / HF_HUB_CACHE to a shared folder), or set "
        'pretrained="/path/to/weights.pth" in the config to a local weights file (timm\'s '
        "layout, see docs/models.md)"
    )


def check_model_name(name: str) -> None:
    """A ConfigError, with the close matches, unless timm knows the model ``name``."""
    if ":" not in name and not timm.is_model(name):  # "hf-hub:..." names are timm's to resolve
        close = difflib.get_close_matches(name, timm.list_models(), n=3, cutoff=0.6)
        hint = f"did you mean {', '.join(close)}?" if close else "see timm.list_models()"
        raise ConfigError(f"backbone {name!r}: not a model timm knows; {hint}")


def create_pretrained(name: str, *, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    """``timm.create_model(name, pretrained=pretrained, **kwargs)``; a failure to fetch the
    weights is a ``CheckpointError`` that says where timm looked and how to fix it; a name timm
    does not know is a ``ConfigError`` (``check_model_name``)."""
    check_model_name(name)
    try:
        return timm.create_model(name, pretrained=pretrained, **kwargs)
    except WEIGHTS_FETCH_ERRORS as error:
        if not pretrained:
            raise
        folder = weights_cache_folder(name, kwargs.get("cache_dir"))
        raise _fetch_failed(name, folder, error) from error
