"""What the CPU can do, and settings that make the stages faster on it.

- ``native_bf16()``: whether the CPU computes bfloat16 in hardware (AMX or AVX512-BF16). There
  bf16 autocast roughly halves a forward pass; elsewhere PyTorch emulates bf16 through fp32 and
  autocast is slower than fp32, so inference uses bf16 only where this is true.
  ``GEOSEG_NATIVE_BF16=1`` (or ``0``) overrides the CPU's flags, so either branch of
  ``--precision auto`` can be run, and tested, on any machine.
- ``resolve_device(text)``: the torch device a "auto", "cpu", "cuda" or "cuda:N" names, checked
  against this machine's GPUs.
- ``keep_freed_memory()``: glibc's allocator hands every block over 32 MiB back to the system
  when it is freed and maps fresh, zeroed pages for the next one, so a training step on a CPU pays
  page faults for every large activation, again and again (on a 2-core CPU a step of the recipe's
  student took 22.0 s instead of 17.9 s). Keeping freed blocks in the process removes that; the
  resident memory then stays at the step's peak, which a training or inference process reaches
  every step anyway.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import platform
from functools import cache

import torch

from geoseg.errors import GeoSegError

__all__ = ["cpu_flags", "keep_freed_memory", "native_bf16", "resolve_device"]

log = logging.getLogger(__name__)

# CPU flags (as /proc/cpuinfo names them) of hardware bfloat16 arithmetic
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# the environment variable that overrides them: "1" bf16 in hardware, "0" not
NATIVE_BF16_VARIABLE = "GEOSEG_NATIVE_BF16"
# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
# variables with which a user chose the allocator's behaviour or another allocator: left alone
_ALLOCATOR_VARIABLES = (
    "MALLOC_MMAP_MAX_",
    "MALLOC_TRIM_THRESHOLD_",
    "GLIBC_TUNABLES",
    "LD_PRELOAD",
)


@cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags from /proc/cpuinfo (empty where there is none, e.g. macOS)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            for line in file:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16(flags: frozenset[str] | None = None) -> bool:
    """True on an x86 CPU with AMX-BF16 or AVX512-BF16 (bf16 matrix arithmetic in hardware).

    Without ``flags``, ``GEOSEG_NATIVE_BF16`` ("1" or "0") answers in place of the CPU's flags.
    """
    if flags is None:
        override = os.environ.get(NATIVE_BF16_VARIABLE, "")
        if override in ("0", "1"):
            return override == "1"
        if override:
            raise GeoSegError(f"{NATIVE_BF16_VARIABLE} must be 0 or 1, got {override!r}")
        flags = cpu_flags()
    return any(flag in flags for flag in BF16_FLAGS)


@cache
def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed large blocks for reuse (see the module docstring).

    Idempotent; does nothing (and returns False) outside Linux/glibc or where the environment
    already sets the allocator (``MALLOC_MMAP_MAX_``, ``MALLOC_TRIM_THRESHOLD_``,
    ``GLIBC_TUNABLES``, a preloaded jemalloc or tcmalloc), and when ``GEOSEG_KEEP_FREED_MEMORY=0``.
    """
    if os.environ.get("GEOSEG_KEEP_FREED_MEMORY", "1") == "0" or platform.system() != "Linux":
        return False
    if any(os.environ.get(name) for name in _ALLOCATOR_VARIABLES):
        return False
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl)
        return False
    # no mmap for large blocks (they come from the heap and are reused), and no trimming of the
    # heap's top below 2 GiB of free memory (mallopt takes a C int)
    kept = bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))
    log.debug("glibc malloc keeps freed blocks: %s", kept)
    return kept


def resolve_device(text: str, local_rank: int | None = None) -> torch.device:
    """``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"`` -> the device, or a ValueError naming
    ``text``; a GPU this machine lacks is an error. "auto": GPU ``local_rank`` (default: the
    current one) where CUDA is available, else the CPU."""
    allowed = "expected auto, cpu, cuda or cuda:N (N a GPU index)"
    kind, _, index = text.partition(":")
    if text in ("auto", "cpu", "cuda"):
        number = None
    elif kind == "cuda" and index.isdigit():
        number = int(index)
    else:
        raise ValueError(f"device {text!r}: {allowed}")
    if text == "cpu" or (text == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError(f"device {text!r}: CUDA is not available on this machine; use cpu or auto")
    count = torch.cuda.device_count()
    if text == "auto":
        number = local_rank
    if number is None:
        number = torch.cuda.current_device()
    if number >= count:
        raise ValueError(
            f"device {text!r}: GPU {number} does not exist; this machine has {count} "
            f"(cuda:0 to cuda:{count - 1})"
        )
    return torch.device("cuda", number)
