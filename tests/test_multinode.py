"""Two nodes x one process: torchrun's multi-node launch on this machine (gloo, CPU).

Each "node" is its own torchrun agent with its own working directory, as on a cluster; they meet
at a local rendezvous. Validation must equal one process exactly, and only global rank 0 writes.
"""

import socket
import subprocess
import sys

import pytest
import torch

from geoseg.datasets.synthetic import write_target_dataset
from geoseg.models.checkpoint import read_checkpoint
from geoseg.training.supervised import VALIDATION_KEY

from conftest import REPO_ROOT, VAL_BATCH, VAL_TILES, single_process_validation, write_config

NODE_SETTINGS = """
accelerator = "cpu"
devices = 1
num_nodes = 2
strategy = "ddp"
val_loader = DataLoader(TargetDataset("{data_root}", "Val"), batch_size={val_batch})
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow  # two torchrun agents training one epoch
def test_two_nodes_validate_as_one_process_and_only_rank_0_writes(tmp_path):
    data_root = write_target_dataset(
        tmp_path / "data", {"Train": 8, "Val": VAL_TILES}, tile_size=32, seed=4
    )
    config = write_config(
        tmp_path / "nodes.py", data_root=data_root, weights_path="weights", max_epoch=1
    )
    with config.open("a") as file:
        file.write(NODE_SETTINGS.format(data_root=data_root, val_batch=VAL_BATCH))
    port = free_port()
    nodes = []
    for node_rank in (0, 1):
        workdir = tmp_path / f"node{node_rank}"
        workdir.mkdir()
        command = [
            sys.executable, "-m", "torch.distributed.run",
            "--nnodes", "2", "--nproc-per-node", "1", "--node-rank", str(node_rank),
            "--master-addr", "127.0.0.1", "--master-port", str(port),
            str(REPO_ROOT / "train_supervision.py"), "-c", str(config),
        ]  # fmt: skip
        nodes.append(
            subprocess.Popen(
                command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
        )
    outputs = [node.communicate(timeout=600)[0] for node in nodes]
    for node, output in zip(nodes, outputs, strict=True):
        assert node.returncode == 0, output[-3000:]
    assert "Starting with 2 processes" in outputs[0]

    # global rank 0 (node 0) wrote the checkpoints and logs; node 1 wrote nothing
    checkpoint_path = tmp_path / "node0" / "weights" / "last.ckpt"
    assert checkpoint_path.is_file() and (tmp_path / "node0" / "lightning_logs").is_dir()
    assert sorted(p.name for p in (tmp_path / "node1").iterdir()) == []

    checkpoint = read_checkpoint(checkpoint_path)
    two_nodes = torch.tensor(checkpoint[VALIDATION_KEY]["confusion_matrix"]["val"])
    module, _ = single_process_validation(checkpoint_path, data_root)
    assert torch.equal(two_nodes, module.last_val_confusion["val"])
