"""The data loaders a training stage reads, built the same way for every config."""

import torch
from torch.utils.data import DataLoader, Dataset


def data_loaders(
    train_dataset: Dataset,
    val_datasets: Dataset | dict[str, Dataset],
    *,
    batch_size: int,
    num_workers: int,
) -> tuple[DataLoader, DataLoader | dict[str, DataLoader]]:
    """(train_loader, val_loader): shuffled full training batches and in-order validation.

    ``val_datasets`` is one dataset or a dict name -> dataset (several validation sets; the first
    is the primary one). ``batch_size`` and ``num_workers`` are per device (per process under
    DDP); workers stay alive between epochs, and batches go to pinned memory when a GPU is there.
    Each loader draws its shuffling and its workers' seeds from a generator of its own, seeded
    from the run's seed: how often validation runs, or with how many workers, does not change
    the training batches.
    """
    options = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
    seed = torch.initial_seed()

    def loader(dataset: Dataset, **kwargs) -> DataLoader:
        generator = torch.Generator().manual_seed(seed)
        return DataLoader(dataset, generator=generator, **options, **kwargs)

    train_loader = loader(train_dataset, shuffle=True, drop_last=True)
    if isinstance(val_datasets, dict):
        return train_loader, {name: loader(d) for name, d in val_datasets.items()}
    return train_loader, loader(val_datasets)
