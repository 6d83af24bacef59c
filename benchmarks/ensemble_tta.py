"""Ensemble TTA throughput: the batched EnsemblePredictor against a naive one-pass-at-a-time loop.

    python benchmarks/ensemble_tta.py --model recipe --images 2      # 2 x FT-UNetFormer Swin-Base
    python benchmarks/ensemble_tta.py --model demo --images 8      # 2 x the demo student

All fp32 paths compute the same merged map (checked); the naive loop runs every (model, scale,
flip) as its own batch-1 forward pass, as a straightforward implementation of the recipe's rule
would. The predictor runs in fp32 and in bf16 autocast (``--precisions``); bf16 is timed against
fp32 in the same flip mode, and the share of pixels whose class it keeps is measured on the first
image (random weights and pixels; ``benchmarks/bf16_agreement.py`` measures trained models on a
test split).
The suite (``python -m benchmarks``) runs ``measure`` as one of its parts.
"""

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

if __package__ in (None, ""):  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import MODELS, build, default_device, interleaved, model_name  # noqa: E402
from geoseg.hardware import native_bf16  # noqa: E402
from geoseg.inference import EnsemblePredictor, autocast_dtype  # noqa: E402
from geoseg.inference.tta import FLIPS  # noqa: E402

SCALES = (0.75, 1.0, 1.25)
ALL_FLIPS = ("none", "h", "v")


@torch.inference_mode()
def naive_merged(predictor: EnsemblePredictor, image: torch.Tensor) -> torch.Tensor:
    """The recipe's rule, one (model, scale, flip) forward pass at a time."""
    height, width = image.shape[-2:]
    total = 0
    for model in predictor.models:
        for scale in predictor.scales:
            size = (round(height * scale), round(width * scale))
            for flip in predictor.flips:
                x = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
                dim = FLIPS[flip]
                with predictor._autocast():
                    logits = model(x if dim is None else x.flip(dim)).float()
                logits = logits if dim is None else logits.flip(dim)
                total = total + F.interpolate(logits, size=(height, width), mode="bilinear")
    return total / predictor.passes


def measure(
    kind: str,
    num_images: int,
    size: int,
    device: torch.device,
    precisions: tuple[str, ...] | None = None,
) -> dict:
    """Images/s of the naive loop and of the predictor with and without batched flips, in each of
    ``precisions`` (the naive loop in fp32 only).

    One untimed call of each on the first image checks that the fp32 variants give the same merged
    map (and warms up) and measures how many pixels' classes bf16 changes; then all variants run
    interleaved, one image at a time, and the median seconds per image is taken.
    """
    precisions = precisions or default_precisions(device)
    models = [build(kind, 0), build(kind, 1)]
    tta = dict(scales=SCALES, flips=ALL_FLIPS, device=device)
    predictors = {
        f"{mode}{'' if precision == 'fp32' else '_' + precision}": EnsemblePredictor(
            models, batch_flips=mode == "flips_batched", precision=precision, **tta
        )
        for precision in precisions
        for mode in ("per_flip", "flips_batched")
    }
    default_predictor = EnsemblePredictor(models, **tta)
    default = "flips_batched" if default_predictor.batch_flips else "per_flip"
    generator = torch.Generator().manual_seed(0)
    images = [
        (torch.rand(1, 3, size, size, generator=generator) * 255).to(device)
        for _ in range(num_images)
    ]
    fp32 = predictors.get("per_flip") or next(iter(predictors.values()))
    reference = naive_merged(fp32, images[0])
    agreement = {}
    for name, predictor in predictors.items():
        merged = predictor.merged(images[0])
        if predictor.precision == "fp32":
            torch.testing.assert_close(merged, reference, rtol=1e-3, atol=1e-3)
        else:
            same = merged.argmax(1) == reference.argmax(1)
            agreement[name] = same.float().mean().item()
    variants = {"naive": lambda image: naive_merged(fp32, image)}
    variants.update({name: predictor.merged for name, predictor in predictors.items()})
    queue = iter([image for image in images for _ in variants])  # round i: image i, each variant
    timings = interleaved(
        {name: _on_next_image(fn, queue) for name, fn in variants.items()},
        rounds=num_images,
        warmup=0,
        device=device,
    )
    seconds = {name: timing["median_s"] for name, timing in timings.items()}
    result = {
        "benchmark": "ensemble_tta",
        "model": kind,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "native_bf16": native_bf16() if device.type == "cpu" else None,
        "images": num_images,
        "size": size,
        "passes_per_image": default_predictor.passes,
        "seconds_per_image": seconds,
        "images_per_s": {name: 1.0 / s for name, s in seconds.items()},
        "speedup_vs_naive": {name: seconds["naive"] / s for name, s in seconds.items()},
        "predictor_default_on_this_device": default,
        "precision_default_on_this_device": default_predictor.precision,
    }
    if "bf16" in precisions and "fp32" in precisions:
        # the default flip mode in bf16 against the same in fp32, and the classes bf16 keeps
        result["bf16_speedup"] = seconds[default] / seconds[f"{default}_bf16"]
        result["bf16_pixel_agreement"] = agreement[f"{default}_bf16"]
    return result


def default_precisions(device: torch.device) -> tuple[str, ...]:
    """fp32, and bf16 where it can be the default: GPUs with bf16, CPUs with native bf16 (bf16
    emulated on a CPU without it is many times slower than fp32)."""
    return ("fp32", "bf16") if autocast_dtype(device) is not None else ("fp32",)


def parse_precisions(text: str | None) -> tuple[str, ...] | None:
    """``"fp32,bf16"`` -> ("fp32", "bf16"); None or "auto" -> None (``default_precisions``)."""
    if text in (None, "auto"):
        return None
    precisions = tuple(p.strip() for p in text.split(",") if p.strip())
    if not precisions or set(precisions) - {"fp32", "bf16"}:
        raise ValueError(f"precisions {text!r}: expected auto, fp32, bf16 or fp32,bf16")
    return precisions


def _on_next_image(fn, queue):
    def call() -> None:
        fn(next(queue))

    return call


def summary(result: dict) -> str:
    """The report of ``measure``'s result in a few lines."""
    default = result["predictor_default_on_this_device"]
    rates = ", ".join(f"{name} {rate:.4g}" for name, rate in result["images_per_s"].items())
    lines = [
        f"{result['model']} ensemble, 2 models x 3 scales x 3 flips, {result['size']}x"
        f"{result['size']}, {result['device']} ({result['threads']} threads): images/s {rates}; "
        "the predictor's default here "
        f"({default}, {result['precision_default_on_this_device']}) is "
        f"x{result['speedup_vs_naive'][default]:.2f} the naive loop"
    ]
    if "bf16_speedup" in result:
        native = result["native_bf16"]
        lines.append(
            f"bf16 / fp32 images/s ({default}): x{result['bf16_speedup']:.2f}; pixels whose class "
            f"bf16 keeps: {100 * result['bf16_pixel_agreement']:.3f}%"
            + ("" if native is None else f" (native bf16 on this CPU: {native})")
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=model_name, default="recipe", help=f"one of {list(MODELS)}")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default=default_device())
    parser.add_argument(
        "--precisions",
        default="auto",
        help="the predictor's precisions to time: fp32,bf16 (auto: bf16 too where it is native)",
    )
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    try:
        precisions = parse_precisions(args.precisions)
    except ValueError as error:
        parser.error(str(error))
    result = measure(args.model, args.images, args.size, torch.device(args.device), precisions)
    print(summary(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
