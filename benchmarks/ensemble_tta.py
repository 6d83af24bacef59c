"""Ensemble TTA throughput: the batched EnsemblePredictor against a naive one-pass-at-a-time loop.

    python benchmarks/ensemble_tta.py --model seed --images 2      # 2 x FT-UNetFormer Swin-Base
    python benchmarks/ensemble_tta.py --model demo --images 8      # 2 x the demo student

Both paths compute the same merged map (checked); the naive loop runs every (model, scale, flip)
as its own batch-1 forward pass, as a straightforward implementation of the seed's rule would.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoseg.datasets import CLASSES, IMAGENET_NORMALIZATION  # noqa: E402
from geoseg.inference import EnsemblePredictor  # noqa: E402
from geoseg.inference.tta import FLIPS  # noqa: E402
from geoseg.models import FTUNetFormer  # noqa: E402
from geoseg.models.loading import ModelSpec  # noqa: E402

MODELS = {
    "seed": dict(backbone="swin_base_patch4_window12_384", decode_channels=256),
    "demo": dict(
        backbone="swin_tiny_patch4_window7_224",
        backbone_kwargs={"embed_dim": 32, "depths": [1, 1, 2, 1], "num_heads": [1, 2, 4, 8]},
        decode_channels=32,
        window_size=4,
    ),
}


def build(kind: str, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    net = FTUNetFormer(num_classes=len(CLASSES), **MODELS[kind]).eval()
    net.spec = ModelSpec("FTUNetFormer", net.init_args, CLASSES, 255, IMAGENET_NORMALIZATION)
    return net


@torch.inference_mode()
def naive_merged(predictor: EnsemblePredictor, image: torch.Tensor) -> torch.Tensor:
    """The seed's rule, one (model, scale, flip) forward pass at a time."""
    height, width = image.shape[-2:]
    total = 0
    for model, (mean, std) in zip(predictor.models, predictor.statistics, strict=True):
        for scale in predictor.scales:
            size = (round(height * scale), round(width * scale))
            for flip in predictor.flips:
                x = F.interpolate(
                    (image - mean) / std, size=size, mode="bilinear", align_corners=False
                )
                dim = FLIPS[flip]
                with predictor._autocast():
                    logits = model(x if dim is None else x.flip(dim)).float()
                logits = logits if dim is None else logits.flip(dim)
                total = total + F.interpolate(logits, size=(height, width), mode="bilinear")
    return total / predictor.passes


def timed(fn, images, device) -> float:
    start = time.perf_counter()
    for image in images:
        fn(image)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=MODELS, default="seed")
    parser.add_argument("--images", type=int, default=2)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    device = torch.device(args.device)
    models = [build(args.model, 0), build(args.model, 1)]
    tta = dict(scales=(0.75, 1.0, 1.25), flips=("none", "h", "v"), device=device)
    one_pass_per_flip = EnsemblePredictor(models, batch_flips=False, **tta)
    flips_batched = EnsemblePredictor(models, batch_flips=True, **tta)
    default = "flips_batched" if EnsemblePredictor(models, **tta).batch_flips else "per_flip"
    generator = torch.Generator().manual_seed(0)
    images = [
        (torch.rand(1, 3, args.size, args.size, generator=generator) * 255).to(device)
        for _ in range(args.images)
    ]
    # Same result first (one warm-up pass each), then the timings, side by side.
    reference = naive_merged(one_pass_per_flip, images[0])
    for predictor in (one_pass_per_flip, flips_batched):
        torch.testing.assert_close(predictor.merged(images[0]), reference, rtol=1e-3, atol=1e-3)
    seconds = {
        "naive": timed(lambda image: naive_merged(one_pass_per_flip, image), images, device),
        "per_flip": timed(one_pass_per_flip.merged, images, device),
        "flips_batched": timed(flips_batched.merged, images, device),
    }
    result = {
        "benchmark": "ensemble_tta",
        "model": args.model,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "images": args.images,
        "size": args.size,
        "passes_per_image": flips_batched.passes,
        "images_per_s": {name: args.images / s for name, s in seconds.items()},
        "speedup_vs_naive": {name: seconds["naive"] / s for name, s in seconds.items()},
        "predictor_default_on_this_device": default,
    }
    rates = ", ".join(f"{name} {rate:.3f}" for name, rate in result["images_per_s"].items())
    print(
        f"{args.model} ensemble, 2 models x 3 scales x 3 flips, {args.size}x{args.size}, {device}: "
        f"images/s {rates}; the predictor's default here ({default}) is "
        f"x{result['speedup_vs_naive'][default]:.2f} the naive loop"
    )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
