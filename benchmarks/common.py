"""What the benchmarks share: the two models, device handling, interleaved timing, peak memory.

Timing: every call is bracketed by device synchronisations; warm-up rounds are discarded; compared
variants run interleaved (one call of each per round), so that a slow phase of the machine hits
them all alike; the statistic is the median over the timed rounds.

Peak memory of one call, as the increase over the memory in use just before it:
- CUDA: ``torch.cuda.max_memory_allocated`` (reset before the call) minus ``memory_allocated``;
  tensors only, not the caching allocator's reserve.
- CPU: the process's peak resident set (``VmHWM`` in ``/proc/self/status``, reset before the call
  by writing 5 to ``/proc/self/clear_refs``, Linux >= 4.0) minus its resident set (``VmRSS``)
  before the call, after ``malloc_trim`` has handed freed heap pages back to the system. Elsewhere
  the process-lifetime peak ``resource.getrusage(...).ru_maxrss`` is reported, which never resets.
"""

import ctypes
import ctypes.util
import re
import resource
import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import timm
import torch
from torch import nn

from geoseg.datasets import CLASSES
from geoseg.evaluation.report import cpu_model
from geoseg.hardware import keep_freed_memory
from geoseg.models import FTUNetFormer
from geoseg.training import default_precision

# The recipe's student (config/biodiversity/*.py, step 1 and 2) and the demo's student
# (config/demo/step1_pretrain_combined.py), with the image size and batch of their configs.
MODELS = {
    "recipe": dict(),  # the published FT-UNetFormer: Swin-Base window 7, decoder 256
    "demo": dict(
        backbone="swin_tiny_patch4_window7_224",
        backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]},
        decode_channels=32,
        window_size=4,
    ),
}
DEFAULT_BACKBONE = {"backbone": FTUNetFormer.defaults["backbone"]}
# Names of earlier versions of this suite, still accepted on the command line.
MODEL_ALIASES = {"seed": "recipe"}


def model_name(text: str) -> str:
    """An argparse type: a model name of MODELS (or an old alias of one)."""
    name = MODEL_ALIASES.get(text, text)
    if name not in MODELS:
        raise ValueError(f"{text!r}: expected one of {', '.join(MODELS)}")
    return name


# as the stage scripts do (geoseg.cli.run_script): large freed blocks stay for reuse
keep_freed_memory()

CONFIG_SIZES = {"recipe": (512, 2), "demo": (64, 8)}  # (img_size, batch_size) of their configs
MIB = 2**20


def build(kind: str, seed: int) -> FTUNetFormer:
    """A randomly initialised FT-UNetFormer of ``kind`` in eval mode (no download: timm's random
    init)."""
    torch.manual_seed(seed)
    return FTUNetFormer(num_classes=len(CLASSES), **MODELS[kind]).eval()


def timm_backbone(kind: str, size: int) -> nn.Module:
    """timm's Swin of ``kind``'s backbone architecture, ``features_only`` for ``size`` x ``size``
    inputs, random init: the yardstick the decoder's cost is measured against."""
    options = {**DEFAULT_BACKBONE, **MODELS[kind]}
    return timm.create_model(
        options["backbone"],
        pretrained=False,
        features_only=True,
        img_size=size,
        **options.get("backbone_kwargs", {}),
    )


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def device_name(device: torch.device) -> str:
    """A readable name of the device: the GPU model, or the CPU model and its core count."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()}, {torch.get_num_threads()} threads"


def autocast_for(device: torch.device, precision: str):
    """The autocast context Lightning's ``precision`` setting puts around a training step."""
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return torch.autocast(device.type, dtype=torch.float16)
    return nullcontext()


def resolve_precision(device: torch.device, precision: str | None) -> str:
    """The training stages' default: bf16-mixed on GPUs that support it, 32-true otherwise."""
    if precision:
        return precision
    return default_precision() if device.type == "cuda" else "32-true"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of one call over what was in use before it (see the module docstring)."""

    def __init__(self, device: torch.device):
        self.device = device
        self._libc = None
        if device.type == "cuda":
            self.method = "cuda max_memory_allocated"
        elif _can_reset_peak_rss():
            self.method = "cpu peak RSS (VmHWM, reset per call)"
            libc = ctypes.util.find_library("c")
            self._libc = ctypes.CDLL(libc) if libc else None
        else:
            self.method = "cpu process peak RSS (ru_maxrss, not reset)"
        self._before = 0

    def start(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        elif self.method.startswith("cpu peak RSS"):
            if self._libc is not None and hasattr(self._libc, "malloc_trim"):
                self._libc.malloc_trim(0)
            Path("/proc/self/clear_refs").write_text("5")
            self._before = _proc_status_kib("VmRSS") * 1024
        else:
            self._before = 0

    def peak_increase(self) -> int:
        """Bytes: the peak since ``start`` minus the memory in use at ``start``."""
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) - self._before
        if self.method.startswith("cpu peak RSS"):
            return _proc_status_kib("VmHWM") * 1024 - self._before
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _proc_status_kib(field: str) -> int:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.MULTILINE).group(1))


def _can_reset_peak_rss() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        _proc_status_kib("VmHWM")
        return True
    except (OSError, AttributeError):
        return False


def interleaved(
    variants: dict[str, Callable[[], dict | None]],
    *,
    rounds: int,
    warmup: int,
    device: torch.device,
    memory: PeakMemory | None = None,
) -> dict[str, dict]:
    """Run every variant once per round, ``warmup`` rounds untimed then ``rounds`` timed.

    A variant may return ``{phase: seconds}`` for parts it timed itself (synchronised); these get
    their own medians. With ``memory``, every variant then runs once more, untimed, for its peak
    memory (resetting the peak, and on CPU trimming the heap, would distort a timed call).
    Returns per variant: ``seconds`` (the timed rounds), ``median_s``, ``phases_median_s`` and
    ``peak_memory_bytes``.
    """
    results = {name: {"seconds": [], "phases": {}} for name in variants}
    for round_index in range(warmup + rounds):
        for name, fn in variants.items():
            synchronize(device)
            start = time.perf_counter()
            phases = fn() or {}
            synchronize(device)
            seconds = time.perf_counter() - start
            if round_index < warmup:
                continue
            results[name]["seconds"].append(seconds)
            for phase, value in phases.items():
                results[name]["phases"].setdefault(phase, []).append(value)
    peaks = {}
    for name, fn in variants.items() if memory is not None else ():
        memory.start()
        fn()
        synchronize(device)
        peaks[name] = memory.peak_increase()
    return {
        name: {
            "seconds": entry["seconds"],
            "median_s": statistics.median(entry["seconds"]),
            "phases_median_s": {k: statistics.median(v) for k, v in entry["phases"].items()},
            "peak_memory_bytes": peaks.get(name),
        }
        for name, entry in results.items()
    }
