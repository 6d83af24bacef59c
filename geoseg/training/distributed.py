"""Exact validation under DDP: every validation sample is scored by exactly one process.

Lightning gives each validation loader a ``torch.utils.data.DistributedSampler``, which pads the
index list by repeating its first samples until the count divides by the number of processes: with
5 tiles on 2 processes, tile 0 is predicted twice and would enter the summed confusion matrix twice.
``UnpaddedDistributedSampler`` splits the indices without padding instead (the processes' sample
counts differ by at most one), and Lightning leaves a loader alone that already has a distributed
sampler. Uneven counts are safe in validation: nothing is synchronised per step (the confusion
matrices and the logged losses are reduced once, at the end of the epoch), and DDP's buffer
broadcast happens at the first forward pass only, which every process makes.
"""

import itertools

from pytorch_lightning.trainer.states import RunningStage
from pytorch_lightning.utilities.data import _update_dataloader
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from geoseg.errors import ConfigError


class UnpaddedDistributedSampler(DistributedSampler):
    """The indices of ``sampler`` split over ``num_replicas`` processes, none repeated.

    Process ``rank`` takes positions rank, rank + W, rank + 2W, ... of the index list. Sequential
    and random samplers are read as ``range(len(dataset))`` (the order does not change a confusion
    matrix, and every process must see the same list); any other sampler must yield the same
    indices in the same order in every process. For evaluation only: DDP training needs the same
    number of steps in every process.
    """

    def __init__(self, sampler: Sampler, num_replicas: int, rank: int):
        super().__init__(sampler, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.sampler = sampler
        self.total_size = len(sampler)
        self.num_samples = len(range(rank, self.total_size, num_replicas))

    def __iter__(self):
        if isinstance(self.sampler, (SequentialSampler, RandomSampler)):
            return iter(range(self.rank, self.total_size, self.num_replicas))
        return itertools.islice(iter(self.sampler), self.rank, None, self.num_replicas)

    def __len__(self) -> int:
        return self.num_samples


def unpadded_eval_loader(loader: DataLoader, num_replicas: int, rank: int) -> DataLoader:
    """``loader`` rebuilt with an ``UnpaddedDistributedSampler`` for process ``rank``.

    A loader that the user already shards (a ``DistributedSampler`` or an ``IterableDataset``) is
    returned unchanged, as Lightning would leave it. Fewer samples than processes is an error: a
    process without a batch would miss DDP's collective calls and hang the others.
    """
    if isinstance(loader.sampler, DistributedSampler) or isinstance(
        loader.dataset, IterableDataset
    ):
        return loader
    if len(loader.sampler) < num_replicas:
        raise ConfigError(
            f"a validation set of {len(loader.sampler)} samples cannot be split over "
            f"{num_replicas} processes: give it at least one sample per process"
        )
    sampler = UnpaddedDistributedSampler(loader.sampler, num_replicas, rank)
    # Lightning's own helper for swapping the sampler of a built loader (it keeps the loader's
    # class, batch size, workers and collate function): what it does itself for its samplers.
    return _update_dataloader(loader, sampler, mode=RunningStage.VALIDATING)


def unpadded_eval_loaders(loaders, num_replicas: int, rank: int):
    """``unpadded_eval_loader`` over one loader or a list of them (the shape is kept)."""
    if num_replicas <= 1:
        return loaders
    if isinstance(loaders, DataLoader):
        return unpadded_eval_loader(loaders, num_replicas, rank)
    return [unpadded_eval_loader(loader, num_replicas, rank) for loader in loaders]
