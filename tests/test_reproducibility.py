"""Same seed, same numbers: a training stage run twice gives identical weights and metrics."""

import subprocess
import sys

import pytest
import torch

from geoseg.models.checkpoint import read_checkpoint

from conftest import REPO_ROOT, write_config


def run_stage(workdir, synthetic_root, name: str, seed: int) -> dict:
    """Train the tiny config (2 epochs, augmentation on, 2 loader workers) in a subprocess."""
    config = write_config(
        workdir / f"{name}.py",
        data_root=synthetic_root,
        weights_path=workdir / name,
        num_workers=2,
        deterministic=True,
    )
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "train_supervision.py"), "-c", str(config)]
        + ["--seed", str(seed)],
        cwd=workdir,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return read_checkpoint(workdir / name / "last.ckpt")


@pytest.fixture(scope="module")
def three_runs(synthetic_root, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("repro")
    return [
        run_stage(workdir, synthetic_root, name, seed)
        for name, seed in (("first", 7), ("second", 7), ("other_seed", 8))
    ]


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
