"""List the networks: default backbone, parameters and one training step's time on this device.

    python -m geoseg.models                       # every network, 512 x 512, batch 2
    python -m geoseg.models --models SegFormer UPerNet --size 256 --repeats 1

Each network is built with its defaults and random weights (nothing is downloaded); the time is
the median over ``--repeats`` of a forward + backward pass with cross-entropy, after one warm-up
pass, in fp32.
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from geoseg.cli import ArgumentParser, run_script
from geoseg.errors import ConfigError
from geoseg.models import MODEL_REGISTRY


def parameter_counts(net: nn.Module) -> tuple[int, int]:
    """(backbone, rest) parameter counts."""
    backbone = sum(p.numel() for p in net.backbone.parameters())
    return backbone, sum(p.numel() for p in net.parameters()) - backbone


def training_step_seconds(
    net: nn.Module, size: int, batch_size: int, repeats: int, device: torch.device
) -> float:
    """Median seconds of forward + backward (cross-entropy on random labels), after a warm-up."""
    net = net.to(device).train()
    x = torch.rand(batch_size, 3, size, size, device=device) * 255
    target = torch.randint(0, net.init_args["num_classes"], (batch_size, size, size), device=device)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        F.cross_entropy(net(x), target).backward()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
        net.zero_grad(set_to_none=True)
    return statistics.median(times[1:])


def main() -> None:
    parser = ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--models", nargs="+", default=sorted(MODEL_REGISTRY))
    parser.add_argument("--size", type=int, default=512, help="tile side in pixels")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes after one warm-up")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    unknown = sorted(set(args.models) - set(MODEL_REGISTRY))
    if unknown:
        raise ConfigError(
            f"unknown network(s) {unknown}; expected some of {sorted(MODEL_REGISTRY)}"
        )
    device = torch.device(args.device)
    print(
        f"{args.batch_size} x 3 x {args.size} x {args.size}, fp32, forward + backward on "
        f"{device} ({torch.get_num_threads()} threads)\n"
    )
    print("| network | default backbone | backbone params | decoder params | step (s) |")
    print("|---|---|---|---|---|")
    for name in args.models:
        net = MODEL_REGISTRY[name](pretrained=False)
        backbone, decoder = parameter_counts(net)
        seconds = training_step_seconds(net, args.size, args.batch_size, args.repeats, device)
        row = (name, net.init_args["backbone"], f"{backbone / 1e6:.1f} M", f"{decoder / 1e6:.2f} M")
        print(f"| {' | '.join(row)} | {seconds:.2f} |", flush=True)


if __name__ == "__main__":
    run_script(main)
