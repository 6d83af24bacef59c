"""Same seed, same numbers: a training stage run twice gives identical weights and metrics."""

import subprocess
import sys

import pytest
import torch

from geoseg.models.checkpoint import read_checkpoint

from conftest import REPO_ROOT, write_config


def deterministic_config(workdir, synthetic_root, name: str, **values):
    """The tiny config ``workdir/<name>.py`` on deterministic kernels, its weights in
    ``workdir/<name>``."""
    return write_config(
        workdir / f"{name}.py",
        data_root=synthetic_root,
        weights_path=workdir / name,
        deterministic=True,
        **values,
    )


def run_stage(workdir, synthetic_root, name: str, seed: int) -> dict:
    """Train the tiny config (2 epochs, augmentation on, 2 loader workers) in a subprocess."""
    config = deterministic_config(workdir, synthetic_root, name, num_workers=2)
    return train(config, seed, workdir / name)


def train(config, seed: int, weights_path) -> dict:
    """Run train_supervision.py on ``config`` with ``seed``; its last checkpoint."""
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train_supervision.py"), "-c", str(config)]
        + ["--seed", str(seed)],
        cwd=config.parent,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_checkpoint(weights_path / "last.ckpt")


@pytest.fixture(scope="module")
def three_runs(synthetic_root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("repro")
    return [
        run_stage(workdir, synthetic_root, name, seed)
        for name, seed in (("first", 7), ("second", 7), ("other_seed", 8))
    ]


# A Dataset of the user's own that calls the project's augmentation directly, the albumentations
# way, instead of going through TargetDataset.
OWN_DATASET = """
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from geoseg.datasets import train_transform


class OwnTiles(Dataset):
    def __init__(self, folder, transform=None):
        self.images = sorted(Path(folder, "images_png").glob("*.png"))
        self.transform = transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, index):
        path = self.images[index]
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        mask = cv2.imread(str(path.parent.parent / "masks_png" / path.name), cv2.IMREAD_UNCHANGED)
        if self.transform is not None:
            augmented = self.transform(image=image, mask=mask)
            image, mask = augmented["image"], augmented["mask"]
        return {
            "img": torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float(),
            "gt_semantic_seg": torch.from_numpy(mask.astype(np.int64)),
            "img_id": path.stem,
        }


train_loader = DataLoader(
    OwnTiles("{data_root}/Train", transform=train_transform(48)),
    batch_size=4, shuffle=True, drop_last=True, num_workers=2,
)
"""


@pytest.mark.slow  # two training runs
def test_a_dataset_calling_train_transform_directly_is_reproducible(synthetic_root, tmp_path):
    """TrainTransform draws from torch's generator however it is called: two runs of a config
    whose own Dataset calls ``train_transform(48)(image=..., mask=...)`` end with the same
    weights (seed 5, 2 loader workers)."""
    runs = []
    for name in ("first", "second"):
        config = deterministic_config(tmp_path, synthetic_root, name, max_epoch=1)
        own_dataset = OWN_DATASET.replace("{data_root}", str(synthetic_root))
        config.write_text(config.read_text() + own_dataset)
        runs.append(train(config, 5, tmp_path / name)["state_dict"])
    first, second = runs
    differing = [key for key, value in first.items() if not torch.equal(value, second[key])]
    assert differing == []


def validation(checkpoint: dict) -> tuple:
    """The last validation's confusion matrix and the best score the checkpoint callback saw."""
    confusion = checkpoint["geoseg_validation"]["confusion_matrix"]["val"]
    best = [
        state["best_model_score"]
        for key, state in checkpoint["callbacks"].items()
        if key.startswith("ModelCheckpoint") and state.get("best_model_score") is not None
    ]
    return confusion, [float(score) for score in best]


@pytest.mark.slow  # three training runs
def test_same_seed_gives_identical_weights_and_metrics(three_runs):
    first, second, _ = three_runs
    assert first["state_dict"].keys() == second["state_dict"].keys()
    for key, value in first["state_dict"].items():
        assert torch.equal(value, second["state_dict"][key]), key
    assert validation(first) == validation(second)
    assert first["global_step"] == second["global_step"] == 4


@pytest.mark.slow  # three training runs
def test_another_seed_gives_other_weights(three_runs):
    first, _, other = three_runs
    differing = [
        key
        for key, value in first["state_dict"].items()
        if value.is_floating_point() and not torch.equal(value, other["state_dict"][key])
    ]
    assert len(differing) > len(first["state_dict"]) // 2


def test_validation_loader_settings_do_not_change_the_training_batches(synthetic_root):
    """Each loader of data_loaders has its own generator: iterating the validation loader (as
    validation does, as often as it is configured to) leaves the training order alone."""
    from geoseg.datasets import TargetDataset
    from geoseg.training import data_loaders

    def first_epochs(validate: bool) -> list[list[str]]:
        torch.manual_seed(5)
        train, val = data_loaders(
            TargetDataset(synthetic_root, "Train"),
            TargetDataset(synthetic_root, "Val"),
            batch_size=4,
            num_workers=0,
        )
        order = []
        for _ in range(2):
            order += [batch["img_id"] for batch in train]
            if validate:
                list(val)
        return order

    assert first_epochs(validate=False) == first_epochs(validate=True)
