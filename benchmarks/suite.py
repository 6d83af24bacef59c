"""The benchmark suite: what a training stage costs, measured side by side in one run.

    python -m benchmarks            # the recipe's sizes: its student 512x512 batch 2, TTA, loading
    python -m benchmarks --quick    # a few minutes on a 2-core CPU (the recipe's student at 256x256)
    python -m benchmarks --device cuda:1 --rounds 20 --parts train,data

On the device it finds (or ``--device``), in the stages' default precision (bf16-mixed on GPUs that
support it, 32-true otherwise; ``--precision``):

- train: for the recipe's student (the published FT-UNetFormer: Swin-Base, decoder 256) and the
  demo's student (config/demo/step1_pretrain_combined.py), random init: the supervised step
  (forward, CE + Dice, backward, AdamW) and the KD step with a teacher of the same size, and the
  forward + backward of the Swin backbone alone (the network's own ``net.backbone``), so that the
  decoder's overhead is a ratio. The three run interleaved; the network's forward + backward is
  timed inside the supervised step.
- tta: ``benchmarks/ensemble_tta.py``: 2 models x 3 scales x 3 flips, the predictor against the
  naive one-pass-at-a-time loop.
- data: images/s of the training dataset (TargetDataset + train_transform at the recipe's size, on
  synthetic tiles written to a temporary folder) through a DataLoader with 1 worker and with the
  configured workers, against the rate at which the supervised step consumes images.

Prints a table and the targets (met / not met, with the ratio) and writes
``benchmarks/results/<device>.json``. Memory: see benchmarks/common.py.
"""

import argparse
import json
import os
import platform
import re
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import ConcatDataset, DataLoader

from benchmarks import ensemble_tta
from benchmarks.common import (
    CONFIG_SIZES,
    MIB,
    MODEL_ALIASES,
    MODELS,
    PeakMemory,
    autocast_for,
    build,
    default_device,
    device_name,
    interleaved,
    model_name,
    resolve_precision,
    synchronize,
    timm_backbone,
)
from geoseg.datasets import (
    CLASSES,
    IGNORE_INDEX,
    TargetDataset,
    train_transform,
)
from geoseg.datasets.synthetic import write_target_dataset
from geoseg.losses import CEDiceLoss
from geoseg.training import KDModule, SupervisedModule, param_groups

RESULTS_DIR = Path(__file__).resolve().parent / "results"
PARTS = ("train", "tta", "data")
CONFIGURED_WORKERS = 4  # num_workers of config/biodiversity/*.py

# The targets: what is compared, and the bound on the ratio (None: listed for information).
TARGETS = {
    "vs_timm_backbone": "FT-UNetFormer fwd+bwd / timm's Swin backbone alone, fwd+bwd",
    "decoder_overhead": "FT-UNetFormer fwd+bwd / its own Swin backbone alone, fwd+bwd",
    "kd_overhead": "KD step / supervised step (same-size teacher)",
    "tta_speedup": "TTA predictor as it runs here / naive loop, images/s",
    "tta_mode": "TTA flip mode as it runs here / the other flip mode, images/s",
    "bf16_tta_speedup": "TTA predictor in bf16 / in fp32, images/s",
    "loading_margin": "data loading (configured workers) / supervised step, images/s",
}
BOUNDS = {
    "vs_timm_backbone": ("<=", 1.40),
    "decoder_overhead": None,
    "kd_overhead": ("<=", 1.5),
    "tta_speedup": (">=", 1.0),
    "tta_mode": (">=", 1.0),
    "bf16_tta_speedup": (">=", 1.8),  # where bf16 is the default: GPUs, CPUs with native bf16
    "loading_margin": (">=", 4.0),
}
# the rows of a training measurement, in the order of the table
TRAINING_ROWS = {
    "timm_backbone_fwd_bwd": "timm's Swin backbone alone, fwd+bwd",
    "backbone_fwd_bwd": "its own Swin backbone alone, fwd+bwd",
    "model_fwd_bwd": "FT-UNetFormer fwd+bwd (CE+Dice)",
    "supervised_step": "supervised step (fwd+bwd+AdamW)",
    "kd_step": "KD step, same-size teacher",
}


# --- training steps ------------------------------------------------------------------------------


def measure_training(
    kind: str,
    size: int,
    batch_size: int,
    *,
    rounds: int,
    warmup: int,
    device: torch.device,
    precision: str,
    memory: PeakMemory,
) -> dict:
    """Backbone fwd+bwd, supervised step and KD step of ``kind``'s student, interleaved."""
    student = build(kind, 0).to(device).train()
    teacher = build(kind, 1).to(device)  # the same size as the student: what the target is about
    loss = CEDiceLoss(ignore_index=IGNORE_INDEX)
    optimizer = torch.optim.AdamW(
        param_groups(student, lr=1e-4, backbone_lr=1e-5, weight_decay=0.01)
    )
    common = dict(classes=CLASSES, ignore_index=IGNORE_INDEX)
    supervised = SupervisedModule(student, loss, optimizer, None, **common)
    distilling = KDModule(
        student, loss, optimizer, None, teacher=teacher, kd_warmup_epochs=0, **common
    )
    generator = torch.Generator().manual_seed(0)
    target = torch.randint(0, len(CLASSES), (batch_size, size, size), generator=generator)
    target[:, :, : size // 16] = IGNORE_INDEX  # a no-data strip, as real tiles have
    batch = {
        "img": (255 * torch.rand(batch_size, 3, size, size, generator=generator)).to(device),
        "gt_semantic_seg": target.to(device),
    }
    autocast = autocast_for(device, precision)

    def backbone_alone(network: nn.Module):
        def step() -> None:
            with autocast:
                features = network(batch["img"])
                total = sum(feature.float().mean() for feature in features)
            total.backward()
            network.zero_grad(set_to_none=True)

        return step

    timm_swin = timm_backbone(kind, size).to(device).train()

    def training_step(loss_of_batch):
        def step() -> dict:
            start = time.perf_counter()
            with autocast:
                value = loss_of_batch(batch)
            value.backward()
            synchronize(device)
            forward_backward = time.perf_counter() - start
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return {"fwd_bwd": forward_backward}

        return step

    timings = interleaved(
        {
            "backbone_fwd_bwd": backbone_alone(student.backbone),
            "timm_backbone_fwd_bwd": backbone_alone(timm_swin),
            "supervised_step": training_step(lambda b: supervised.supervised_step(b)[0]),
            "kd_step": training_step(lambda b: distilling.distillation_step(b)[0]),
        },
        rounds=rounds,
        warmup=warmup,
        device=device,
        memory=memory,
    )
    model_fwd_bwd = timings["supervised_step"]["phases_median_s"]["fwd_bwd"]
    result = {"size": size, "batch": batch_size, "precision": precision, "rounds": rounds}
    for name in TRAINING_ROWS:
        timing = timings.get(name, {"median_s": model_fwd_bwd, "peak_memory_bytes": None})
        peak = timing["peak_memory_bytes"]
        result[name] = {
            "median_s": timing["median_s"],
            "images_per_s": batch_size / timing["median_s"],
            "peak_memory_mib": None if peak is None else peak / MIB,
            "seconds": timing.get("seconds"),
        }
    result["decoder_overhead"] = model_fwd_bwd / timings["backbone_fwd_bwd"]["median_s"]
    result["vs_timm_backbone"] = model_fwd_bwd / timings["timm_backbone_fwd_bwd"]["median_s"]
    result["kd_overhead"] = timings["kd_step"]["median_s"] / timings["supervised_step"]["median_s"]
    return result


# --- data loading --------------------------------------------------------------------------------


def measure_loading(
    size: int, tiles: int, items: int, workers: int, batch_size: int, device: torch.device
) -> dict:
    """Images/s of TargetDataset + train_transform(size) through a DataLoader, 1 and ``workers``
    workers. ``tiles`` synthetic tiles are written once and read ``items`` times in all (each read
    decodes the PNGs and draws fresh augmentations); the first pass starts the workers, untimed."""
    rates = {}
    with tempfile.TemporaryDirectory(prefix="geoseg-benchmark-") as folder:
        root = write_target_dataset(
            Path(folder) / "biodiversity", {"Train": tiles}, tile_size=size, seed=0
        )
        dataset = TargetDataset(root, "Train", transform=train_transform(size))
        repeated = ConcatDataset([dataset] * max(items // tiles, 1))
        for count in sorted({1, workers}):
            # More workers than cores is what the configs ask for on a small machine: measured.
            warnings.filterwarnings("ignore", "This DataLoader will create", UserWarning)
            loader = DataLoader(
                repeated,
                batch_size=batch_size,
                shuffle=True,
                drop_last=True,
                num_workers=count,
                pin_memory=device.type == "cuda",
                persistent_workers=True,
            )
            for _ in zip(range(count * 2), loader, strict=False):  # workers up, first batches
                pass
            images, start = 0, time.perf_counter()
            for batch in loader:
                images += len(batch["img"])
            rates[count] = images / (time.perf_counter() - start)
            del loader
    return {
        "size": size,
        "tiles": tiles,
        "items": len(repeated),
        "batch": batch_size,
        "workers": workers,
        "images_per_s_1_worker": rates[1],
        "images_per_s_configured": rates[workers],
        "scaling": rates[workers] / rates[1],
    }


# --- the run -------------------------------------------------------------------------------------


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="few rounds, seed student at 256")
    parser.add_argument("--device", default=default_device(), help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", help="e.g. 32-true, bf16-mixed (default: the stages')")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"subset of {','.join(PARTS)}")
    parser.add_argument("--models", default="recipe,demo", help="training steps of these models")
    parser.add_argument("--size", type=int, help="recipe student's image side (default 512)")
    parser.add_argument("--batch", type=int, help="recipe student's batch (default 2)")
    parser.add_argument(
        "--rounds", type=int, help="timed rounds of the recipe student's steps (demo: 10x)"
    )
    parser.add_argument("--warmup", type=int, help="untimed rounds before them")
    parser.add_argument(
        "--tta-model", type=model_name, help="recipe or demo; default: recipe on GPU, demo on CPU"
    )
    parser.add_argument("--tta-images", type=int, help="images timed (after one check image)")
    parser.add_argument("--tta-size", type=int, default=512)
    parser.add_argument(
        "--tta-precisions",
        default="auto",
        help="the TTA predictor's precisions: fp32,bf16 (auto: bf16 too where it is native)",
    )
    parser.add_argument("--workers", type=int, default=CONFIGURED_WORKERS)
    parser.add_argument("--loader-tiles", type=int, default=16, help="synthetic tiles written")
    parser.add_argument("--loader-items", type=int, help="items read per measurement")
    parser.add_argument(
        "--out", type=Path, help="JSON path (default benchmarks/results/<device>.json)"
    )
    args = parser.parse_args(argv)
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    models = [model.strip() for model in args.models.split(",") if model.strip()]
    models = [MODEL_ALIASES.get(model, model) for model in models]
    if set(parts) - set(PARTS) or set(models) - set(MODELS):
        parser.error(f"--parts from {','.join(PARTS)}; --models from {','.join(MODELS)}")
    args.parts, args.models = parts, models
    try:
        args.tta_precisions = ensemble_tta.parse_precisions(args.tta_precisions)
    except ValueError as error:
        parser.error(str(error))
    cuda = args.device.startswith("cuda")
    args.size = args.size or (256 if args.quick else 512)
    args.batch = args.batch or 2
    args.rounds = args.rounds or (2 if args.quick else 10 if cuda else 3)
    args.warmup = args.warmup if args.warmup is not None else (3 if cuda else 1)
    args.tta_model = args.tta_model or ("recipe" if cuda else "demo")
    args.tta_images = args.tta_images or (2 if args.quick else 8)
    args.loader_items = args.loader_items or (48 if args.quick else 96)
    return args


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    precision = resolve_precision(device, args.precision)
    memory = PeakMemory(device)
    report = {
        "suite": "geoseg benchmarks",
        "command": " ".join(["python -m benchmarks", *args.argv]),
        "device": str(device),
        "device_name": device_name(device),
        "cpu_count": _cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "precision": precision,
        "memory_method": memory.method,
        # CPU step times depend on the allocator: glibc's default maps and unmaps every large
        # tensor, whose page faults can take a quarter of a step (see docs/benchmarks.md).
        "allocator_env": {
            key: value
            for key, value in os.environ.items()
            if key.startswith("MALLOC_") or key in ("GLIBC_TUNABLES", "LD_PRELOAD")
        },
        "train": {},
    }
    started = time.perf_counter()
    if "train" in args.parts:
        for kind in args.models:
            size, batch = (args.size, args.batch) if kind == "recipe" else CONFIG_SIZES[kind]
            report["train"][kind] = measure_training(
                kind,
                size,
                batch,
                # the demo's steps are about 100x cheaper: more rounds for a steadier median
                rounds=args.rounds * (10 if kind == "demo" else 1),
                warmup=args.warmup,
                device=device,
                precision=precision,
                memory=memory,
            )
    if "tta" in args.parts:
        report["tta"] = ensemble_tta.measure(
            args.tta_model, args.tta_images, args.tta_size, device, args.tta_precisions
        )
    if "data" in args.parts:
        report["data_loading"] = measure_loading(
            args.size, args.loader_tiles, args.loader_items, args.workers, args.batch, device
        )
    report["wall_s"] = time.perf_counter() - started
    report["targets"] = targets(report)
    return report


def targets(report: dict) -> list[dict]:
    """The targets from the measurements in ``report``: ratio, bound, met or not.

    The training ratios are targets for the recipe's student; the demo's are listed for
    information (met None). The TTA targets are about the predictor as it runs on this device
    (its flip mode and precision); bf16's speed-up is a target where bf16 is the default.
    """
    rows = []
    for kind, result in report["train"].items():
        for key in ("vs_timm_backbone", "decoder_overhead", "kd_overhead"):
            rows.append(_target(key, kind, result[key], applies=kind == "recipe"))
    tta = report.get("tta")
    if tta:
        default = tta["predictor_default_on_this_device"]
        other = "per_flip" if default == "flips_batched" else "flips_batched"
        rates = tta["images_per_s"]
        if tta["precision_default_on_this_device"] == "bf16" and f"{default}_bf16" in rates:
            default, other = f"{default}_bf16", f"{other}_bf16"
        rows.append(_target("tta_speedup", tta["model"], tta["speedup_vs_naive"][default]))
        rows.append(_target("tta_mode", tta["model"], rates[default] / rates[other]))
        if "bf16_speedup" in tta:
            bf16_default = tta["precision_default_on_this_device"] == "bf16"
            rows.append(
                _target("bf16_tta_speedup", tta["model"], tta["bf16_speedup"], bf16_default)
            )
    loading, recipe = report.get("data_loading"), report["train"].get("recipe")
    if loading and recipe:
        consumed = recipe["supervised_step"]["images_per_s"]
        margin = loading["images_per_s_configured"] / consumed
        rows.append(_target("loading_margin", "recipe", margin))
    return rows


def _target(key: str, model: str, ratio: float, applies: bool = True) -> dict:
    """A ratio and whether it meets its bound (``met`` None where no target applies)."""
    applies = applies and BOUNDS[key] is not None
    met = bound = None
    if applies:
        relation, value = BOUNDS[key]
        met = ratio <= value if relation == "<=" else ratio >= value
        bound = f"{relation} {value:g}"
    return {
        "target": key,
        "model": model,
        "description": TARGETS[key],
        "ratio": ratio,
        "bound": bound,
        "met": met,
    }


def _cpu_count() -> int | None:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count()


def format_table(report: dict) -> str:
    """The report as a Markdown table of measurements and one of targets."""
    lines = [
        f"device: {report['device']} ({report['device_name']}), {report['cpu_count']} CPU cores, "
        f"torch {report['torch']}, precision {report['precision']}; "
        f"memory: {report['memory_method']}, peak over the memory in use before the call; "
        f"allocator settings: {report['allocator_env'] or 'defaults'}",
        "",
        "| measurement | size | batch | median s | images/s | peak MiB |",
        "|---|---|---|---|---|---|",
    ]
    for kind, result in report["train"].items():
        for key, label in TRAINING_ROWS.items():
            row = result[key]
            peak = "-" if row["peak_memory_mib"] is None else f"{row['peak_memory_mib']:.0f}"
            lines.append(
                f"| {kind}: {label} | {result['size']}x{result['size']} | {result['batch']} | "
                f"{row['median_s']:.3f} | {row['images_per_s']:.3f} | {peak} |"
            )
    tta = report.get("tta")
    if tta:
        default = tta["predictor_default_on_this_device"]
        if tta["precision_default_on_this_device"] == "bf16":
            default += "_bf16"
        for name in tta["seconds_per_image"]:
            suffix = " (default here)" if name == default else ""
            lines.append(
                f"| TTA {tta['model']} x2, 3 scales x 3 flips: {name}{suffix} | "
                f"{tta['size']}x{tta['size']} | 1 | {tta['seconds_per_image'][name]:.3f} | "
                f"{tta['images_per_s'][name]:.3f} | - |"
            )
    loading = report.get("data_loading")
    if loading:
        rows = {1: "images_per_s_1_worker", loading["workers"]: "images_per_s_configured"}
        for workers, key in rows.items():
            lines.append(
                f"| data loading, TargetDataset + train_transform, {workers} worker(s) | "
                f"{loading['size']}x{loading['size']} | {loading['batch']} | - | "
                f"{loading[key]:.1f} | - |"
            )
    if report["targets"]:
        lines += ["", "| target | model | ratio | bound | met |", "|---|---|---|---|---|"]
        for target in report["targets"]:
            met = {True: "met", False: "NOT MET", None: "(no target)"}[target["met"]]
            bound = "-" if target["bound"] is None else f"{target['bound']}x"
            lines.append(
                f"| {target['description']} | {target['model']} | {target['ratio']:.2f}x | "
                f"{bound} | {met} |"
            )
    if tta and "bf16_pixel_agreement" in tta:
        lines.append(
            f"\nTTA in bf16: {100 * tta['bf16_pixel_agreement']:.3f}% of the pixels of the check "
            f"image keep their fp32 class (native bf16 on this CPU: {tta['native_bf16']})"
        )
    lines.append(f"\nwall time of the suite: {report['wall_s']:.0f} s")
    return "\n".join(lines)


def default_output(report: dict) -> Path:
    """benchmarks/results/cpu.json, or cuda-<gpu model>.json."""
    if report["device"].startswith("cuda"):
        slug = "cuda-" + re.sub(r"[^A-Za-z0-9]+", "_", report["device_name"]).strip("_")
    else:
        slug = "cpu"
    return RESULTS_DIR / f"{slug}.json"


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    args.argv = argv
    report = run(args)
    print(format_table(report))
    out = args.out or default_output(report)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written: {out}")
