"""Validation of tiles of mixed sizes: batches are grouped by size, and the metrics are exact."""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, default_collate

from geoseg.datasets import CLASSES, IGNORE_INDEX, TargetDataset
from geoseg.training import data_loaders
from geoseg.training.data import collate_tiles
from geoseg.training.distributed import unpadded_eval_loader
from geoseg.training.supervised import SupervisedModule

from conftest import cpu_trainer, tiny_ftunetformer, write_pair

SIZES = [(32, 32), (48, 40), (32, 32), (40, 56), (48, 40), (40, 56), (32, 32)]


def sample(height, width, index=0):
    return {
        "img": torch.rand(3, height, width) * 255,
        "gt_semantic_seg": torch.randint(len(CLASSES), (height, width)),
        "img_id": f"tile_{index}",
    }


class PerTileCrossEntropy(nn.Module):
    """The mean over tiles of each tile's cross-entropy: the same at every batch size (unlike a
    loss pooled over the batch's pixels, such as CEDiceLoss)."""

    def forward(self, logits, target):
        losses = [
            F.cross_entropy(tile_logits[None], tile_target[None], ignore_index=IGNORE_INDEX)
            for tile_logits, tile_target in zip(logits, target, strict=True)
        ]
        return torch.stack(losses).mean()


def test_uniform_samples_collate_as_default_collate():
    torch.manual_seed(0)
    samples = [sample(32, 32, i) for i in range(3)]
    batch, expected = collate_tiles(samples), default_collate(samples)
    assert batch.keys() == expected.keys() and "size_groups" not in batch
    assert torch.equal(batch["img"], expected["img"])
    assert torch.equal(batch["gt_semantic_seg"], expected["gt_semantic_seg"])
    assert batch["img_id"] == expected["img_id"] == ["tile_0", "tile_1", "tile_2"]


def test_mixed_sizes_collate_into_size_groups_in_order_of_first_appearance():
    torch.manual_seed(0)
    samples = [sample(h, w, i) for i, (h, w) in enumerate(SIZES[:6])]
    groups = collate_tiles(samples)["size_groups"]
    assert [group["img_id"] for group in groups] == [
        ["tile_0", "tile_2"],
        ["tile_1", "tile_4"],
        ["tile_3", "tile_5"],
    ]
    for group, indices in zip(groups, [(0, 2), (1, 4), (3, 5)], strict=True):
        expected = default_collate([samples[i] for i in indices])
        assert torch.equal(group["img"], expected["img"])
        assert torch.equal(group["gt_semantic_seg"], expected["gt_semantic_seg"])


def write_mixed_val_set(root):
    """7 Val tiles of 3 sizes with random class masks, some pixels ignored."""
    rng = np.random.default_rng(3)
    for index, (height, width) in enumerate(SIZES):
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        mask = rng.integers(0, len(CLASSES), (height, width), dtype=np.uint8)
        mask[rng.random((height, width)) < 0.1] = IGNORE_INDEX
        write_pair(root, f"tile_{index}", image, mask, split="Val")
    return TargetDataset(root, "Val")


def validate(loader):
    """A fixed tiny network validated on ``loader``: (confusion matrix, logged val_loss)."""
    torch.manual_seed(0)
    net = tiny_ftunetformer()
    module = SupervisedModule(
        net,
        PerTileCrossEntropy(),
        torch.optim.AdamW(net.parameters(), lr=1e-3),
        None,
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
    )
    trainer = cpu_trainer()
    trainer.validate(module, loader, verbose=False)
    return module.last_val_confusion["val"], trainer.callback_metrics["val_loss"]


def test_mixed_sizes_validate_at_batch_4_exactly_as_at_batch_1(tmp_path):
    dataset = write_mixed_val_set(tmp_path)
    _, batched = data_loaders(dataset, dataset, batch_size=4, num_workers=0)
    assert any("size_groups" in batch for batch in batched)
    confusion_4, loss_4 = validate(batched)
    confusion_1, loss_1 = validate(DataLoader(dataset, batch_size=1))
    valid = sum(int((item["gt_semantic_seg"] != IGNORE_INDEX).sum()) for item in dataset)
    assert int(confusion_1.sum()) == valid
    assert torch.equal(confusion_4, confusion_1)
    assert abs(loss_4.item() - loss_1.item()) < 1e-6


def test_the_ddp_rebuilt_validation_loader_keeps_the_collate(tmp_path):
    dataset = write_mixed_val_set(tmp_path)
    _, val_loader = data_loaders(dataset, {"val": dataset}, batch_size=4, num_workers=0)
    assert val_loader["val"].collate_fn is collate_tiles
    assert unpadded_eval_loader(val_loader["val"], 2, 0).collate_fn is collate_tiles
