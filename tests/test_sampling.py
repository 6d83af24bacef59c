"""Domain-balanced batches (geoseg.datasets.sampling) on tiny combined layouts written here."""

from collections import Counter
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from lightning_fabric.utilities.data import _set_sampler_epoch
from torch.utils.data import DataLoader

from geoseg.config import load_config
from geoseg.datasets import BiodiversityCombinedDataset, DomainBalancedBatchSampler
from geoseg.errors import ConfigError, DataError
from geoseg.training import build_trainer, data_loaders
from geoseg.training.run import shards_itself

from conftest import write_config


def write_combined(root, target: int, oem: int):
    """<root>/Train/{images_png,masks_png}/{target_,oem_}<i>.png: 4x4 tiles."""
    for folder in ("images_png", "masks_png"):
        (root / "Train" / folder).mkdir(parents=True, exist_ok=True)
    names = [f"target_{i:03d}" for i in range(target)] + [f"oem_{i:03d}" for i in range(oem)]
    for name in names:
        cv2.imwrite(
            str(root / "Train" / "images_png" / f"{name}.png"), np.zeros((4, 4, 3), "uint8")
        )
        cv2.imwrite(str(root / "Train" / "masks_png" / f"{name}.png"), np.zeros((4, 4), "uint8"))
    return root


def tiles(ids: list[str]) -> SimpleNamespace:
    """A stand-in dataset: only the tile names matter to the sampler."""
    return SimpleNamespace(img_ids=ids)


def names(dataset, batch: list[int]) -> list[str]:
    return [dataset.img_ids[i] for i in batch]


@pytest.fixture
def three_and_fifty(tmp_path):
    return BiodiversityCombinedDataset(write_combined(tmp_path, target=3, oem=50), "Train")


@pytest.mark.parametrize("share, target_per_batch", [(0.5, 4), (0.25, 2)])
def test_every_batch_holds_the_share_and_the_small_domain_repeats(
    three_and_fifty, share, target_per_batch
):
    dataset = three_and_fifty
    sampler = DomainBalancedBatchSampler(dataset, 8, share, seed=0)
    batches = list(sampler)
    assert len(sampler) == len(batches) == 53 // 8  # 6 batches, as a drop_last loader
    drawn = Counter()
    for batch in batches:
        assert len(batch) == 8
        kinds = Counter(name.split("_")[0] for name in names(dataset, batch))
        assert kinds == {"target": target_per_batch, "oem": 8 - target_per_batch}
        drawn.update(names(dataset, batch))
    # 6 x 4 = 24 target draws from 3 tiles: 8 whole passes, each tile 8 times (6 x 2: 4 times)
    passes = 6 * target_per_batch // 3
    target = [name for name in dataset.img_ids if name.startswith("target_")]
    assert {name: drawn[name] for name in target} == dict.fromkeys(target, passes)
    # 24 (or 36) OpenEarthMap draws out of 50: none repeated
    oem = [name for name in drawn.elements() if name.startswith("oem_")]
    assert len(oem) == len(set(oem)) == 6 * (8 - target_per_batch)


def test_each_tile_once_per_epoch_where_the_sizes_fit():
    # 10 target + 30 other tiles, 4 per batch with 1 target: 10 batches take exactly 10 + 30
    dataset = tiles([f"target_{i}" for i in range(10)] + [f"oem_{i}" for i in range(30)])
    sampler = DomainBalancedBatchSampler(dataset, 4, 0.25, seed=3)
    for _ in range(2):  # two epochs, each a full pass over both domains
        batches = list(sampler)
        assert len(batches) == 10
        assert sorted(i for batch in batches for i in batch) == list(range(40))
        assert all(sum(i < 10 for i in batch) == 1 for batch in batches)


def test_any_two_prefixes_name_the_domains():
    dataset = tiles(["a/1", "b/1", "a/2", "b/2", "b/3", "b/4"])
    sampler = DomainBalancedBatchSampler(dataset, 2, 0.5, seed=0, prefixes=("a/", "b/"))
    for batch in sampler:
        assert sorted(name[0] for name in names(dataset, batch)) == ["a", "b"]


def test_same_seed_same_batches_other_seed_or_epoch_other_batches():
    dataset = tiles([f"target_{i}" for i in range(20)] + [f"oem_{i}" for i in range(60)])

    def draw(seed, epoch=None):
        sampler = DomainBalancedBatchSampler(dataset, 8, 0.5, seed=seed)
        if epoch is not None:
            sampler.set_epoch(epoch)
        return list(sampler)

    assert draw(1) == draw(1)
    assert draw(1) != draw(2)
    assert draw(1, epoch=0) != draw(1, epoch=1)
    # passes advance the epoch; set_epoch (what a resumed run's Lightning calls) draws it again
    sampler = DomainBalancedBatchSampler(dataset, 8, 0.5, seed=1)
    first, second = list(sampler), list(sampler)
    assert first == draw(1, epoch=0) and second == draw(1, epoch=1)
    # without a seed of its own, the sampler takes the run's
    torch.manual_seed(1)
    assert list(DomainBalancedBatchSampler(dataset, 8, 0.5)) == first


def test_lightning_reaches_set_epoch_through_the_loader():
    dataset = tiles([f"target_{i}" for i in range(4)] + [f"oem_{i}" for i in range(12)])
    sampler = DomainBalancedBatchSampler(dataset, 4, 0.5, seed=0)
    loader = DataLoader(dataset.img_ids, batch_sampler=sampler)
    _set_sampler_epoch(loader, 7)
    assert sampler.epoch == 7
    assert shards_itself(loader)
    assert not shards_itself(DataLoader(dataset.img_ids, batch_size=4))


def test_processes_take_interleaved_shares_of_the_same_batches():
    dataset = tiles([f"target_{i}" for i in range(9)] + [f"oem_{i}" for i in range(30)])
    alone = list(DomainBalancedBatchSampler(dataset, 4, 0.5, seed=5))  # 39 // 4 = 9 batches
    shares = [
        list(DomainBalancedBatchSampler(dataset, 4, 0.5, seed=5, num_replicas=2, rank=rank))
        for rank in (0, 1)
    ]
    # 9 batches over 2 processes: 4 each, the 9th dropped
    assert shares[0] == alone[0:8:2] and shares[1] == alone[1:8:2]
    sampler = DomainBalancedBatchSampler(dataset, 4, 0.5, seed=5, num_replicas=2, rank=1)
    assert len(sampler) == 4


@pytest.mark.parametrize(
    "share, batch_size, expected",
    [
        (0.0, 8, "target_share=0.0: expected a fraction strictly between 0 and 1"),
        (1.0, 8, "target_share=1.0: expected a fraction strictly between 0 and 1"),
        (-0.5, 8, "target_share=-0.5"),
        ("half", 8, "target_share='half'"),
        # round(0.05 x 8) = 0 target tiles, round(0.95 x 8) = 8: no tile of the other domain
        (0.05, 8, "target_share=0.05 with batch_size=8 gives 0 target tiles and 8 others"),
        (0.95, 8, "target_share=0.95 with batch_size=8 gives 8 target tiles and 0 others"),
        (0.5, 1, "batch_size=1: domain-balanced batches need at least 2 tiles"),
    ],
)
def test_bad_shares_name_the_value(share, batch_size, expected):
    dataset = tiles(["target_0", "oem_0", "oem_1"])
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        DomainBalancedBatchSampler(dataset, batch_size, share, seed=0)


def test_a_missing_domain_is_an_error(tmp_path):
    root = write_combined(tmp_path, target=3, oem=5)
    target_only = BiodiversityCombinedDataset(root, "Train", sources=("target",))
    with pytest.raises(DataError, match="no tile of the domain 'oem_' among the 3 tiles"):
        DomainBalancedBatchSampler(target_only, 2, 0.5, seed=0)
    with pytest.raises(DataError, match="1 tiles belong to neither domain.*'x_0'"):
        DomainBalancedBatchSampler(tiles(["target_0", "oem_0", "x_0"]), 2, 0.5, seed=0)
    with pytest.raises(ConfigError, match="img_ids list"):
        DomainBalancedBatchSampler(list(range(8)), 2, 0.5, seed=0)


def test_data_loaders_with_a_share_and_without(three_and_fifty):
    dataset = three_and_fifty
    torch.manual_seed(11)
    balanced, _ = data_loaders(dataset, dataset, batch_size=8, num_workers=0, target_share=0.25)
    batches = [batch["img_id"] for batch in balanced]
    assert len(batches) == 6
    assert all(sum(name.startswith("target_") for name in batch) == 2 for batch in batches)
    expected = [names(dataset, batch) for batch in DomainBalancedBatchSampler(dataset, 8, 0.25)]
    assert batches == expected  # seeded from the run's seed (11 here)
    # without a share: the shuffled loader of before, batch for batch
    torch.manual_seed(11)
    plain, _ = data_loaders(dataset, dataset, batch_size=8, num_workers=0)
    reference = DataLoader(
        dataset,
        batch_size=8,
        shuffle=True,
        drop_last=True,
        generator=torch.Generator().manual_seed(11),
    )
    assert [b["img_id"] for b in plain] == [b["img_id"] for b in reference]


def test_the_trainer_keeps_the_sampler_under_ddp(tmp_path, synthetic_root, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the logger's folder
    config = load_config(
        write_config(tmp_path / "c.py", data_root=synthetic_root, weights_path=tmp_path / "w")
    )
    assert build_trainer(config)._accelerator_connector.use_distributed_sampler
    dataset = tiles([f"target_{i}" for i in range(4)] + [f"oem_{i}" for i in range(4)])
    sampler = DomainBalancedBatchSampler(dataset, 4, 0.5, seed=0)
    config.train_loader = DataLoader(dataset.img_ids, batch_sampler=sampler)
    assert not build_trainer(config)._accelerator_connector.use_distributed_sampler
