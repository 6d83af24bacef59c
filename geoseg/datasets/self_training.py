"""Labelled and pseudo-labelled tiles in one training set, at a chosen share."""

import torch
from torch.utils.data import Dataset


class SelfTrainingDataset(Dataset):
    """Every labelled tile once per epoch, plus pseudo-labelled tiles making up ``pseudo_share``
    of the epoch (drawn at random, a fresh draw every epoch).

    The pseudo-labels' ignore pixels (not confident enough) carry the ignore id, which the losses
    leave out. ``pseudo_share=None`` takes every pseudo-labelled tile once instead. The draws come
    from torch's generator, which the data loader seeds per worker from the run's seed, so a seed
    gives the same epochs.
    """

    def __init__(
        self, labelled: Dataset, pseudo_labelled: Dataset, pseudo_share: float | None = 0.5
    ):
        if pseudo_share is not None and not 0.0 <= pseudo_share < 1.0:
            raise ValueError(f"pseudo_share must be in [0, 1) or None, got {pseudo_share}")
        if len(pseudo_labelled) == 0:
            raise ValueError("the pseudo-labelled dataset is empty")
        self.labelled, self.pseudo_labelled = labelled, pseudo_labelled
        self.num_pseudo = (
            len(pseudo_labelled)
            if pseudo_share is None
            else round(len(labelled) * pseudo_share / (1.0 - pseudo_share))
        )

    def __len__(self) -> int:
        return len(self.labelled) + self.num_pseudo

    def __getitem__(self, index: int):
        if index < len(self.labelled):
            return self.labelled[index]
        if self.num_pseudo == len(self.pseudo_labelled):
            return self.pseudo_labelled[index - len(self.labelled)]
        return self.pseudo_labelled[int(torch.randint(len(self.pseudo_labelled), ()))]
