"""Domain-balanced batches: a fixed share of target tiles in every training batch.

Step 1 trains on the target tiles and a second domain (OpenEarthMap) together. Shuffled as one
pool, a batch holds the domains in proportion to their sizes: with 3 target tiles among 53, most
batches hold none. ``DomainBalancedBatchSampler`` fills every batch with exactly
``round(target_share x batch_size)`` target tiles and second-domain tiles for the rest, whatever the
sizes: the smaller domain is repeated, which is the point.
"""

from collections.abc import Iterator

import numpy as np
import torch
import torch.distributed as dist

from geoseg.datasets.combine import OEM_PREFIX, TARGET_PREFIX
from geoseg.errors import ConfigError, DataError


class DomainBalancedBatchSampler:
    """Batches of dataset indices, each with exactly ``round(target_share x batch_size)`` tiles of
    the target domain and the rest from the second domain, in a shuffled order within the batch.

    ``dataset``: anything with an ``img_ids`` list (tile names, e.g. a
    ``BiodiversityCombinedDataset``); a tile belongs to the domain whose name prefix it starts
    with, ``prefixes = (target prefix, second-domain prefix)`` (default ``target_``, ``oem_``). A
    tile with neither prefix, a domain without tiles, or a share that leaves a domain no tile in a
    batch is an error.

    Drawing: each domain's tiles are read in a random order, without replacement; when a domain
    runs out, its tiles are reshuffled and read again (so a batch may hold a tile twice only where
    one pass ends and the next begins, or where a domain has fewer tiles than its share of a
    batch). Every epoch starts both domains afresh. An epoch holds ``epoch_batches`` batches
    (default ``len(dataset) // batch_size``, as a shuffled loader that drops the last partial
    batch).

    Reproducible: the batches of an epoch depend only on ``seed`` (default
    ``torch.initial_seed()`` when the sampler is built, i.e. the run's seed) and the epoch number.
    The epoch is ``set_epoch(epoch)``'s (Lightning calls it at the start of every epoch, resumed
    runs included: it looks for the hook on ``batch_sampler.sampler``, which is why that attribute
    exists), and otherwise advances by one with every pass over the sampler.

    Under DDP (``torch.distributed`` initialised when the batches are drawn, or ``num_replicas``
    and ``rank`` given), every process draws the same batches (the same seed on every process, as
    ``pl.seed_everything`` gives) and process r keeps batches r, r + W, r + 2W, ...: each gets
    ``epoch_batches // W`` different batches of ``batch_size`` tiles (the remainder is dropped,
    so no process waits for another in a gradient synchronisation). Lightning must not put its
    own DistributedSampler in place: ``geoseg.training.build_trainer`` sets
    ``use_distributed_sampler=False`` when the training loader's batch sampler is this one (the
    validation loaders are split over the processes by ``geoseg.training.distributed`` either way).

    With ``rare_class_crop`` on the dataset, an item drawn for a rare class comes from a tile
    chosen by class, not by index: the share then holds for the indexed tiles only.
    """

    def __init__(
        self,
        dataset,
        batch_size: int,
        target_share: float = 0.5,
        *,
        seed: int | None = None,
        epoch_batches: int | None = None,
        prefixes: tuple[str, str] = (TARGET_PREFIX, OEM_PREFIX),
        num_replicas: int | None = None,
        rank: int | None = None,
    ):
        img_ids = getattr(dataset, "img_ids", None)
        if img_ids is None:
            raise ConfigError(
                f"domain-balanced batches need a dataset with an img_ids list of tile names (e.g. "
                f"BiodiversityCombinedDataset); got {type(dataset).__name__}"
            )
        if not isinstance(batch_size, int) or batch_size < 2:
            raise ConfigError(
                f"batch_size={batch_size!r}: domain-balanced batches need at least 2 tiles per "
                "batch, one of each domain"
            )
        self.target_per_batch = _target_tiles_per_batch(target_share, batch_size)
        self.batch_size = batch_size
        self.target_share = target_share
        self.prefixes = tuple(prefixes)
        self.domains = _split_domains([str(name) for name in img_ids], self.prefixes)
        self.epoch_batches = len(img_ids) // batch_size if epoch_batches is None else epoch_batches
        if self.epoch_batches < 1:
            raise ConfigError(
                f"epoch_batches={self.epoch_batches}: expected at least 1 batch per epoch "
                f"({len(img_ids)} tiles, batch_size={batch_size})"
            )
        self.seed = torch.initial_seed() if seed is None else int(seed)
        self.epoch = 0
        self.num_replicas, self.rank = num_replicas, rank
        self.sampler = _EpochHook(self)

    def set_epoch(self, epoch: int) -> None:
        """Draw the batches of ``epoch`` on the next pass."""
        self.epoch = int(epoch)

    def _replicas(self) -> tuple[int, int]:
        """(world size, rank): the given ones, else torch.distributed's when initialised."""
        if self.num_replicas is not None:
            num_replicas, rank = self.num_replicas, self.rank or 0
        elif dist.is_available() and dist.is_initialized():
            num_replicas, rank = dist.get_world_size(), dist.get_rank()
        else:
            num_replicas, rank = 1, 0
        if not 0 <= rank < num_replicas:
            raise ConfigError(f"rank={rank}: expected 0..{num_replicas - 1}")
        if self.epoch_batches < num_replicas:
            raise ConfigError(
                f"{self.epoch_batches} batches per epoch cannot be split over {num_replicas} "
                "processes: give at least one batch per process"
            )
        return num_replicas, rank

    def __len__(self) -> int:
        """Batches per epoch of this process."""
        return self.epoch_batches // self._replicas()[0]

    def batches_of(self, epoch: int) -> list[list[int]]:
        """The ``epoch_batches`` batches of ``epoch`` that all processes share, before splitting."""
        # One generator per (seed, epoch): an epoch's batches do not depend on earlier epochs
        # having been drawn (a resumed run draws the same ones).
        mixed = np.random.SeedSequence([self.seed, epoch]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(mixed[0]) << 32 | int(mixed[1]))
        target = _Pool(self.domains[0], generator)
        other = _Pool(self.domains[1], generator)
        other_per_batch = self.batch_size - self.target_per_batch
        batches = []
        for _ in range(self.epoch_batches):
            batch = target.take(self.target_per_batch) + other.take(other_per_batch)
            # shuffled within the batch: mixing augmentations pair neighbouring items
            order = torch.randperm(len(batch), generator=generator).tolist()
            batches.append([batch[i] for i in order])
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        num_replicas, rank = self._replicas()
        batches = self.batches_of(self.epoch)
        self.epoch += 1
        per_process = self.epoch_batches // num_replicas
        yield from batches[rank::num_replicas][:per_process]


class _EpochHook:
    """What Lightning calls ``set_epoch`` on: it looks on ``batch_sampler.sampler``, never on
    the batch sampler itself."""

    def __init__(self, owner: DomainBalancedBatchSampler):
        self.owner = owner

    def set_epoch(self, epoch: int) -> None:
        self.owner.set_epoch(epoch)


class _Pool:
    """A domain's indices read in random order, reshuffled whenever they run out."""

    def __init__(self, indices: list[int], generator: torch.Generator):
        self.indices, self.generator = indices, generator
        self.order: list[int] = []

    def take(self, count: int) -> list[int]:
        taken = []
        while len(taken) < count:
            if not self.order:
                permutation = torch.randperm(len(self.indices), generator=self.generator)
                self.order = [self.indices[i] for i in permutation.tolist()]
            needed = count - len(taken)
            taken += self.order[:needed]
            self.order = self.order[needed:]
        return taken


def _target_tiles_per_batch(target_share: float, batch_size: int) -> int:
    """round(target_share x batch_size), which must leave each domain at least one tile."""
    if not isinstance(target_share, (int, float)) or not 0 < target_share < 1:
        raise ConfigError(
            f"target_share={target_share!r}: expected a fraction strictly between 0 and 1"
        )
    count = round(target_share * batch_size)
    if not 1 <= count <= batch_size - 1:
        raise ConfigError(
            f"target_share={target_share} with batch_size={batch_size} gives {count} target "
            f"tiles and {batch_size - count} others per batch; expected at least one of each "
            f"domain: round(target_share x batch_size) between 1 and {batch_size - 1}"
        )
    return count


def _split_domains(img_ids: list[str], prefixes: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """(target indices, second-domain indices) of ``img_ids`` by name prefix."""
    if len(prefixes) != 2:
        raise ConfigError(f"prefixes={prefixes!r}: expected (target prefix, second-domain prefix)")
    domains: tuple[list[int], list[int]] = ([], [])
    unknown = []
    for index, name in enumerate(img_ids):
        if name.startswith(prefixes[0]):
            domains[0].append(index)
        elif name.startswith(prefixes[1]):
            domains[1].append(index)
        else:
            unknown.append(name)
    if unknown:
        raise DataError(
            f"{len(unknown)} tiles belong to neither domain (names starting with "
            f"{list(prefixes)}), e.g. {unknown[0]!r}"
        )
    for prefix, indices in zip(prefixes, domains, strict=True):
        if not indices:
            raise DataError(
                f"no tile of the domain {prefix!r} among the {len(img_ids)} tiles: domain-balanced "
                f"batches need both domains (tiles starting with {list(prefixes)}); "
                "was the dataset built with sources=('target', 'oem')?"
            )
    return domains
