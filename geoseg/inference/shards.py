"""Inference over many processes (torchrun or srun): each process its own inputs and device.

No process talks to another: the inputs are split by their position in the sorted list, the same
in every process, and each process writes its own files, so the outputs are those of one process.
A scene is never split: it goes whole to one process.
"""

import os
from pathlib import Path


def launch_rank() -> tuple[int, int, int]:
    """(rank, number of processes, local rank) of this process: torchrun's ``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, else srun's ``SLURM_PROCID``, ``SLURM_NTASKS``,
    ``SLURM_LOCALID``, else (0, 1, 0)."""
    for rank, world, local in (
        ("RANK", "WORLD_SIZE", "LOCAL_RANK"),
        ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
    ):
        if rank in os.environ and world in os.environ:
            return int(os.environ[rank]), int(os.environ[world]), int(os.environ.get(local, 0))
    return 0, 1, 0


def shard(paths: list[Path], rank: int, world_size: int) -> list[Path]:
    """The inputs of process ``rank`` out of ``world_size``: every ``world_size``-th one from
    ``rank`` on, so each input goes to exactly one process."""
    return paths[rank::world_size]
