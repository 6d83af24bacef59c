"""Ensemble TTA throughput: the batched EnsemblePredictor against a naive one-pass-at-a-time loop.

    python benchmarks/ensemble_tta.py --model recipe --images 2      # 2 x FT-UNetFormer Swin-Base
    python benchmarks/ensemble_tta.py --model demo --images 8      # 2 x the demo student

Both paths compute the same merged map (checked); the naive loop runs every (model, scale, flip)
as its own batch-1 forward pass, as a straightforward implementation of the recipe's rule would.
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
from geoseg.inference import EnsemblePredictor  # noqa: E402
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


def measure(kind: str, num_images: int, size: int, device: torch.device) -> dict:
    """Images/s of the naive loop and of the predictor with and without batched flips.

    One untimed call of each on the first image checks that all three give the same merged map
    (and warms up); then the three run interleaved, one image at a time, and the median seconds
    per image is taken.
    """
    models = [build(kind, 0), build(kind, 1)]
    tta = dict(scales=SCALES, flips=ALL_FLIPS, device=device)
    one_pass_per_flip = EnsemblePredictor(models, batch_flips=False, **tta)
    flips_batched = EnsemblePredictor(models, batch_flips=True, **tta)
    default = "flips_batched" if EnsemblePredictor(models, **tta).batch_flips else "per_flip"
    generator = torch.Generator().manual_seed(0)
    images = [
        (torch.rand(1, 3, size, size, generator=generator) * 255).to(device)
        for _ in range(num_images)
    ]
    reference = naive_merged(one_pass_per_flip, images[0])
    for predictor in (one_pass_per_flip, flips_batched):
        torch.testing.assert_close(predictor.merged(images[0]), reference, rtol=1e-3, atol=1e-3)
    variants = {
        "naive": lambda image: naive_merged(one_pass_per_flip, image),
        "per_flip": one_pass_per_flip.merged,
        "flips_batched": flips_batched.merged,
    }
    queue = iter([image for image in images for _ in variants])  # round i: image i, each variant
    timings = interleaved(
        {name: _on_next_image(fn, queue) for name, fn in variants.items()},
        rounds=num_images,
        warmup=0,
        device=device,
    )
    seconds = {name: timing["median_s"] for name, timing in timings.items()}
    return {
        "benchmark": "ensemble_tta",
        "model": kind,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "images": num_images,
        "size": size,
        "passes_per_image": flips_batched.passes,
        "seconds_per_image": seconds,
        "images_per_s": {name: 1.0 / s for name, s in seconds.items()},
        "speedup_vs_naive": {name: seconds["naive"] / s for name, s in seconds.items()},
        "predictor_default_on_this_device": default,
    }


def _on_next_image(fn, queue):
    def call() -> None:
        fn(next(queue))

    return call


def summary(result: dict) -> str:
    """The one-line report of ``measure``'s result."""
    default = result["predictor_default_on_this_device"]
    rates = ", ".join(f"{name} {rate:.3f}" for name, rate in result["images_per_s"].items())
    return (
        f"{result['model']} ensemble, 2 models x 3 scales x 3 flips, {result['size']}x"
        f"{result['size']}, {result['device']}: images/s {rates}; the predictor's default here "
        f"({default}) is x{result['speedup_vs_naive'][default]:.2f} the naive loop"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=model_name, default="recipe", help=f"one of {list(MODELS)}")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default=default_device())
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    result = measure(args.model, args.images, args.size, torch.device(args.device))
    print(summary(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
