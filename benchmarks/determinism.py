"""What deterministic mode costs: a training step with and without deterministic algorithms.

    python benchmarks/determinism.py --model demo            # the demo student, 64x64, batch 8
    python benchmarks/determinism.py --model recipe --rounds 3 # FT-UNetFormer Swin-Base, 512x512

The two settings (``torch.use_deterministic_algorithms(True, warn_only=True)``, which a config's
``deterministic = True`` selects, and the default) run interleaved, one forward + backward + AdamW
step each per round; prints the medians and their ratio and writes
``benchmarks/results/<device>-determinism-<model>.json``.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import CONFIG_SIZES, MODELS, build, default_device, interleaved, model_name  # noqa: E402
from geoseg.losses import CEDiceLoss  # noqa: E402


def measure(kind: str, rounds: int, device: torch.device) -> dict:
    """Median seconds of one training step with deterministic algorithms off and on."""
    size, batch = CONFIG_SIZES[kind]
    net = build(kind, 0).to(device).train()
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-4)
    loss_fn = CEDiceLoss(ignore_index=255)
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, size, size, generator=generator).to(device)
    mask = torch.randint(0, 6, (batch, size, size), generator=generator).to(device)

    def step(deterministic: bool):
        def run():
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
            optimizer.zero_grad(set_to_none=True)
            loss_fn(net(image), mask).backward()
            optimizer.step()

        return run

    try:
        timings = interleaved(
            {"default": step(False), "deterministic": step(True)},
            rounds=rounds,
            warmup=2,
            device=device,
        )
    finally:
        torch.use_deterministic_algorithms(False)
    medians = {name: entry["median_s"] for name, entry in timings.items()}
    return {
        "benchmark": "determinism",
        "model": kind,
        "device": device.type,
        "threads": torch.get_num_threads(),
        "size": size,
        "batch": batch,
        "median_step_s": medians,
        "deterministic_over_default": medians["deterministic"] / medians["default"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=model_name, default="demo", help=f"one of {list(MODELS)}")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--output", type=Path, help="JSON path (default benchmarks/results/...)")
    args = parser.parse_args()
    result = measure(args.model, args.rounds, torch.device(args.device))
    medians = result["median_step_s"]
    print(
        f"{args.model} training step, {result['size']}x{result['size']} batch {result['batch']} "
        f"on {args.device}: default {medians['default']:.4f} s, deterministic "
        f"{medians['deterministic']:.4f} s, ratio {result['deterministic_over_default']:.3f}"
    )
    output = args.output or (
        Path(__file__).parent / "results" / f"{args.device}-determinism-{args.model}.json"
    )
    output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
