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
    """
    options = dict(
        batch_size=batch_size,
        num_workers=num_workers,
        persistent_workers=num_workers > 0,
        pin_memory=torch.cuda.is_available(),
    )
    train_loader = DataLoader(train_dataset, shuffle=True, drop_last=True, **options)
    if isinstance(val_datasets, dict):
        return train_loader, {name: DataLoader(d, **options) for name, d in val_datasets.items()}
    return train_loader, DataLoader(val_datasets, **options)
