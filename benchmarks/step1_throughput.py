"""Images/s of the recipe's step 1 training step on one device, eager and compiled, and which
attention kernels PyTorch runs.

    python benchmarks/step1_throughput.py                    # a GPU: bf16-mixed, batch 2 and 16
    python benchmarks/step1_throughput.py --model demo --device cpu --batches 2 --rounds 2

The step is step 1's: the published FT-UNetFormer (random init), CE + Dice, backward, AdamW, at
512 x 512 in the stages' default precision (bf16-mixed on GPUs with bf16). Variants, each timed
after its own warm-up (which includes compiling): ``eager`` (the decoder on channels-last
features on a GPU, contiguous NCHW on a CPU: ``geoseg.models.encoder_decoder.feature_layout``),
``eager_other_layout`` (the other layout, to show the choice) and ``compiled``
(``nn.Module.compile``, as ``compile = True`` in a config). Under the profiler one eager step
records which ``scaled_dot_product`` kernels the Swin's and the decoder's window attention ran
(flash, memory-efficient, cuDNN or the unfused math path).
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (  # noqa: E402
    autocast_for,
    build,
    default_device,
    device_name,
    model_name,
    resolve_precision,
    synchronize,
)
from geoseg.datasets import CLASSES, IGNORE_INDEX  # noqa: E402
from geoseg.losses import CEDiceLoss  # noqa: E402
from geoseg.models.encoder_decoder import feature_layout  # noqa: E402
from geoseg.training import SupervisedModule, param_groups  # noqa: E402

# The recipe's step 1: 50 epochs of 4,615 tiles in 10-12 h on its GPU, about 6 images/s.
RECIPE_IMAGES_PER_S = 6.0
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention": "flash",
    "aten::_scaled_dot_product_efficient_attention": "memory-efficient",
    "aten::_scaled_dot_product_cudnn_attention": "cudnn",
    "aten::_scaled_dot_product_flash_attention_for_cpu": "flash (CPU)",
    "aten::_scaled_dot_product_attention_math": "math (unfused)",
}


def training_step(kind: str, batch_size: int, size: int, device, precision: str):
    """(one supervised step as a function, the network): fwd, CE + Dice, bwd, AdamW."""
    net = build(kind, 0).to(device).train()
    optimizer = torch.optim.AdamW(param_groups(net, lr=1e-4, backbone_lr=1e-5, weight_decay=0.01))
    module = SupervisedModule(
        net,
        CEDiceLoss(ignore_index=IGNORE_INDEX),
        optimizer,
        None,
        classes=CLASSES,
        ignore_index=IGNORE_INDEX,
    )
    generator = torch.Generator().manual_seed(0)
    batch = {
        "img": (255 * torch.rand(batch_size, 3, size, size, generator=generator)).to(device),
        "gt_semantic_seg": torch.randint(
            0, len(CLASSES), (batch_size, size, size), generator=generator
        ).to(device),
    }
    autocast = autocast_for(device, precision)

    def step() -> None:
        with autocast:
            loss = module.supervised_step(batch)[0]
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step, net


def timed(step, rounds: int, warmup: int, device) -> dict:
    """Median seconds of ``rounds`` calls after ``warmup`` untimed ones (and their seconds)."""
    started = time.perf_counter()
    for _ in range(warmup):
        step()
    synchronize(device)
    warmup_s = time.perf_counter() - started
    seconds = []
    for _ in range(rounds):
        start = time.perf_counter()
        step()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return {"median_s": sorted(seconds)[len(seconds) // 2], "warmup_s": warmup_s}


def attention_kernels(step) -> dict[str, int]:
    """How often one step ran each ``scaled_dot_product`` kernel (forward ops), by name."""
    from torch.profiler import profile

    with profile() as prof:
        step()
    counts = {}
    for event in prof.key_averages():
        if event.key in SDPA_OPS:
            counts[SDPA_OPS[event.key]] = event.count
    return counts


def measure(args) -> dict:
    device = torch.device(args.device)
    precision = resolve_precision(device, args.precision)
    own = feature_layout(device)
    other = torch.contiguous_format if own == torch.channels_last else torch.channels_last
    result = {
        "benchmark": "step1_throughput",
        "model": args.model,
        "device": str(device),
        "device_name": device_name(device),
        "torch": torch.__version__,
        "precision": precision,
        "size": args.size,
        "feature_layout": str(own).removeprefix("torch."),
        "recipe_images_per_s": RECIPE_IMAGES_PER_S,
        "batches": {},
    }
    for batch_size in args.batches:
        rows = result["batches"][str(batch_size)] = {}

        def record(name: str, timing: dict, batch_size=batch_size, rows=rows) -> None:
            timing["images_per_s"] = batch_size / timing["median_s"]
            timing["vs_recipe"] = timing["images_per_s"] / RECIPE_IMAGES_PER_S
            rows[name] = timing
            if args.json:  # after every row: a run cut short keeps what it measured
                args.json.write_text(json.dumps(result, indent=2) + "\n")

        step, net = training_step(args.model, batch_size, args.size, device, precision)
        if "attention" not in result:
            result["attention"] = attention_kernels(step)
            print(f"attention kernels per step: {result['attention']}", flush=True)
        record("eager", timed(step, args.rounds, args.warmup, device))
        net.feature_layout = other
        record("eager_other_layout", timed(step, args.rounds, args.warmup, device))
        net.feature_layout = None
        if batch_size in args.compile_batches:
            net.compile()
            record("compiled", timed(step, args.rounds, args.warmup + 2, device))
            torch._dynamo.reset()
        del step, net
        if device.type == "cuda":
            torch.cuda.empty_cache()
        print(summary_line(batch_size, rows), flush=True)
    return result


def table(result: dict) -> str:
    """The result as a Markdown table, with the attention kernels under it."""
    lines = [
        f"{result['device_name']}, torch {result['torch']}, {result['precision']}, "
        f"{result['model']} student at {result['size']}x{result['size']}; decoder features "
        f"{result['feature_layout']} by default",
        "",
        "| batch | variant | median s per step | images/s | vs the recipe's ~6 images/s |",
        "|---|---|---|---|---|",
    ]
    for batch_size, rows in result["batches"].items():
        for name, row in rows.items():
            lines.append(
                f"| {batch_size} | {name} | {row['median_s']:.4f} | {row['images_per_s']:.1f} | "
                f"{row['vs_recipe']:.1f}x |"
            )
    kernels = ", ".join(f"{name} x{count}" for name, count in result["attention"].items())
    lines += ["", f"attention kernels in one step: {kernels or 'none recorded'}"]
    return "\n".join(lines)


def summary_line(batch_size: int, rows: dict) -> str:
    parts = [f"{name} {row['images_per_s']:.2f} img/s" for name, row in rows.items()]
    return f"batch {batch_size}: " + ", ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=model_name, default="recipe", help="recipe or demo")
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--precision", help="default: the stages' (bf16-mixed on GPUs)")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", default="2,16", help="batch sizes (the recipe's is 2 per GPU)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument(
        "--compile-batches", help="the batch sizes also timed compiled (default: all; none: '')"
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    args.batches = [int(b) for b in str(args.batches).split(",") if b.strip()]
    compiled = args.batches if args.compile_batches is None else args.compile_batches.split(",")
    args.compile_batches = [int(b) for b in compiled if str(b).strip()]
    measure(args)


if __name__ == "__main__":
    main()
