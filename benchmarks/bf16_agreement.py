"""How much bf16 inference changes an ensemble's maps: pixels whose class agrees with fp32, and the
mIoU of both against the ground truth.

    python benchmarks/bf16_agreement.py --input-dir data/demo/biodiversity/Test/images_png \\
        --gt-dir data/demo/biodiversity/Test/masks_png --ensembles \\
        model_weights/demo/seed_1/student_target_only/last.ckpt,model_weights/demo/seed_1/student_ft_target_kd/last.ckpt

The ensemble runs with ensemble_inference.py's default TTA (scales 0.75, 1.0, 1.25; flips none,
h, v) once in fp32 and once under bf16 autocast (forced, so that it also runs on a CPU without
native bf16, where PyTorch emulates bf16 with the same rounding of every operand), merging and
taking the argmax in fp32 both times.
"""

import argparse
import json
import sys
from pathlib import Path

import torch

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from geoseg.datasets.io import read_mask  # noqa: E402
from geoseg.inference import EnsemblePredictor, InputImages, find_inputs  # noqa: E402
from geoseg.metrics import confusion_matrix, segmentation_scores  # noqa: E402
from geoseg.models import load_model_and_spec  # noqa: E402

SCALES, FLIPS = (0.75, 1.0, 1.25), ("none", "h", "v")


def measure(ensembles: list[list[Path]], input_dir: Path, gt_dir: Path | None) -> dict:
    """Pixel agreement of bf16 with fp32 over the images of ``input_dir``, per ensemble and over
    all of them (and each ensemble's mIoU in both precisions)."""
    rows = [_measure_one(checkpoints, input_dir, gt_dir) for checkpoints in ensembles]
    agreeing = sum(row["agreeing"] for row in rows)
    pixels = sum(row["pixels"] for row in rows)
    return {
        "benchmark": "bf16_agreement",
        "input_dir": str(input_dir),
        "ensembles": rows,
        "pixels": pixels,
        "agreement": agreeing / pixels,
        "lowest_image_agreement": min(row["lowest_image_agreement"] for row in rows),
    }


def _measure_one(checkpoints: list[Path], input_dir: Path, gt_dir: Path | None) -> dict:
    models, specs = zip(*(load_model_and_spec(path) for path in checkpoints), strict=True)
    spec = specs[0]
    predictors = {
        precision: EnsemblePredictor(models, scales=SCALES, flips=FLIPS, precision=precision)
        for precision in ("fp32", "bf16")
    }
    images = InputImages(find_inputs(input_dir), spec.raster)
    agreeing = total = 0
    confusion = {precision: 0 for precision in predictors}
    per_image = []
    for index in range(len(images)):
        item = images[index]
        if item["error"]:
            raise SystemExit(f"error: {item['error']}")
        pred = {
            precision: predictor.predict(item["image"][None])[0][0]
            for precision, predictor in predictors.items()
        }
        same = int((pred["fp32"] == pred["bf16"]).sum())
        agreeing, total = agreeing + same, total + pred["fp32"].numel()
        per_image.append(same / pred["fp32"].numel())
        if gt_dir is not None:
            target = torch.from_numpy(read_mask(gt_dir / f"{item['stem']}.png").astype("int64"))
            for precision, labels in pred.items():
                confusion[precision] = confusion[precision] + confusion_matrix(
                    labels, target, spec.num_classes, spec.ignore_index
                )
    row = {
        "checkpoints": [str(path) for path in checkpoints],
        "images": len(images),
        "pixels": total,
        "agreeing": agreeing,
        "agreement": agreeing / total,
        "lowest_image_agreement": min(per_image),
    }
    if gt_dir is not None:
        row["mIoU"] = {
            precision: segmentation_scores(matrix, spec.classes)["mIoU"]
            for precision, matrix in confusion.items()
        }
    return row


def summary(result: dict) -> str:
    """A line per ensemble (agreement, lowest image, mIoU in both precisions) and the total."""
    lines = [
        "| ensemble | images | pixels | same class in bf16 | lowest image | mIoU fp32 | mIoU bf16 |"
    ]
    lines.append("|---|---|---|---|---|---|---|")
    for row in result["ensembles"]:
        names = " + ".join(Path(path).parent.name for path in row["checkpoints"])
        folder = Path(row["checkpoints"][0]).parent.parent.name
        miou = row.get("mIoU", {})
        scores = [f"{100 * miou[p]:.2f}" if p in miou else "-" for p in ("fp32", "bf16")]
        lines.append(
            f"| {folder}: {names} | {row['images']} | {row['pixels']} | "
            f"{100 * row['agreement']:.3f}% | {100 * row['lowest_image_agreement']:.3f}% | "
            f"{scores[0]} | {scores[1]} |"
        )
    lines.append(
        f"| all | - | {result['pixels']} | {100 * result['agreement']:.3f}% | "
        f"{100 * result['lowest_image_agreement']:.3f}% | - | - |"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--ensembles",
        nargs="+",
        required=True,
        help="ensembles, each its checkpoints joined by commas (a.ckpt,b.ckpt c.ckpt,d.ckpt)",
    )
    parser.add_argument("--input-dir", type=Path, required=True)
    parser.add_argument("--gt-dir", type=Path, help="masks named as the images (for mIoU)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    ensembles = [[Path(path) for path in group.split(",") if path] for group in args.ensembles]
    result = measure(ensembles, args.input_dir, args.gt_dir)
    print(summary(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
