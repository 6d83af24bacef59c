"""The data loaders a training stage reads, built the same way for every config."""

import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from geoseg.datasets.sampling import DomainBalancedBatchSampler


def collate_tiles(samples: list[dict]) -> dict:
    """``default_collate(samples)`` when every "img" has the same shape; otherwise
    ``{"size_groups": [batch, ...]}``: one ``default_collate`` batch per (H, W) size, in order of
    first appearance, each keeping its samples' order."""
    if len({sample["img"].shape for sample in samples}) == 1:
        return default_collate(samples)
    groups: dict[tuple[int, int], list[dict]] = {}
    for sample in samples:
        groups.setdefault(tuple(sample["img"].shape[-2:]), []).append(sample)
    return {"size_groups": [default_collate(group) for group in groups.values()]}


def data_loaders(
    train_dataset: Dataset,
    val_datasets: Dataset | dict[str, Dataset],
    *,
    batch_size: int,
    num_workers: int,
    target_share: float | None = None,
) -> tuple[DataLoader, DataLoader | dict[str, DataLoader]]:
    """(train_loader, val_loader): shuffled full training batches and in-order validation.

    ``val_datasets`` is one dataset or a dict name -> dataset (several validation sets; the first
    is the primary one). ``batch_size`` and ``num_workers`` are per device (per process under
    DDP); workers stay alive between epochs, and batches go to pinned memory when a GPU is there.
    Each loader draws its shuffling and its workers' seeds from a generator of its own, seeded
    from the run's seed: how often validation runs, or with how many workers, does not change
    the training batches.

    Validation tiles may differ in size: validation batches are collated by ``collate_tiles``,
    which groups a batch's tiles by size instead of padding them. Each tile is then predicted as
    at batch size 1, so the metrics are exact; padding would change the network's input near the
    borders, and so its predictions there. Training crops all have one size and keep the default
    collation.

    ``target_share`` (step 1 on target + a second domain): every training batch holds exactly
    ``round(target_share x batch_size)`` target tiles and second-domain tiles for the rest, drawn
    by a ``DomainBalancedBatchSampler`` seeded from the run's seed (``len(train) // batch_size``
    batches per epoch); None (default): plain shuffled batches.
    """
    options = dict(
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
    seed = torch.initial_seed()

    def loader(dataset: Dataset, **kwargs) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, generator=generator, **options, **kwargs)

    if target_share is None:
        train_loader = loader(train_dataset, batch_size=batch_size, shuffle=True, drop_last=True)
    else:
        sampler = DomainBalancedBatchSampler(train_dataset, batch_size, target_share, seed=seed)
        train_loader = loader(train_dataset, batch_sampler=sampler)
    if isinstance(val_datasets, dict):
        val_loaders = {
            name: loader(d, batch_size=batch_size, collate_fn=collate_tiles)
            for name, d in val_datasets.items()
        }
        return train_loader, val_loaders
    return train_loader, loader(val_datasets, batch_size=batch_size, collate_fn=collate_tiles)
