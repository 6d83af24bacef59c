"""Exact validation under DDP: every validation sample is scored by exactly one process.

Lightning gives each validation loader a ``torch.utils.data.DistributedSampler``, which pads the
index list by repeating its first samples until the count divides by the number of processes: with
5 tiles on 2 processes, tile 0 is predicted twice and would enter the summed confusion matrix twice.
Here each validation loader gets Lightning's ``UnrepeatedDistributedSamplerWrapper`` instead
(process r takes positions r, r + W, r + 2W, ... of the loader's own index list, none repeated; the
processes' sample counts differ by at most one), and Lightning leaves a loader alone that already
has a distributed sampler. Uneven counts are safe in validation: nothing is synchronised per step
(the confusion matrices and the logged losses are reduced once, at the end of the epoch), and
DDP's buffer broadcast happens at the first forward pass only, which every process makes.
"""

from pytorch_lightning.overrides.distributed import UnrepeatedDistributedSamplerWrapper
from torch.utils.data import (
    DataLoader,
    DistributedSampler,
    IterableDataset,
    RandomSampler,
    SequentialSampler,
)

from geoseg.errors import ConfigError


def unpadded_eval_loader(loader: DataLoader, num_replicas: int, rank: int) -> DataLoader:
    """``loader`` rebuilt to read process ``rank``'s share of its samples, none repeated.

    A loader that the user already shards (a ``DistributedSampler`` or an ``IterableDataset``) is
    returned unchanged, as Lightning would leave it. Fewer samples than processes is an error: a
    process without a batch would miss DDP's collective calls and hang the others.
    """
    if isinstance(loader.sampler, DistributedSampler) or isinstance(
        loader.dataset, IterableDataset
    ):
        return loader
    if loader.batch_size is None:
        raise ConfigError(
            "a validation loader with its own batch_sampler cannot be split over processes "
            "without repeats; give it batch_size= and a plain sampler"
        )
    if len(loader.sampler) < num_replicas:
        raise ConfigError(
            f"a validation set of {len(loader.sampler)} samples cannot be split over "
            f"{num_replicas} processes: give it at least one sample per process"
        )
    # Sequential and random samplers are read in dataset order: every process must split the same
    # index list, and the order does not change a confusion matrix.
    sampler = loader.sampler
    if isinstance(sampler, (SequentialSampler, RandomSampler)):
        sampler = SequentialSampler(loader.dataset)
    sampler = UnrepeatedDistributedSamplerWrapper(
        sampler, num_replicas=num_replicas, rank=rank, shuffle=False
    )
    return type(loader)(
        loader.dataset,
        batch_size=loader.batch_size,
        sampler=sampler,
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        drop_last=loader.drop_last,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        prefetch_factor=loader.prefetch_factor,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
        # in_order: torch >= 2.6
        **({"in_order": loader.in_order} if hasattr(loader, "in_order") else {}),
    )


def unpadded_eval_loaders(loaders, num_replicas: int, rank: int):
    """``unpadded_eval_loader`` over one loader or a list of them (the shape is kept)."""
    if num_replicas <= 1:
        return loaders
    if isinstance(loaders, DataLoader):
        return unpadded_eval_loader(loaders, num_replicas, rank)
    return [unpadded_eval_loader(loader, num_replicas, rank) for loader in loaders]
