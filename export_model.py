"""Export a checkpoint as a portable ONNX or TorchScript model that runs without this project.

    python export_model.py model_weights/biodiversity/student_ft_target_kd/last.ckpt \
        --format onnx --tile-size 512

The model takes float32 tiles (batch, bands, tile, tile) of raw bands on their native scale (0-255
for 8-bit RGB) and returns float32 logits (batch, classes, tile, tile); scaling and normalisation
are inside it. Height and width are fixed to --tile-size; the batch is dynamic unless
--batch-size fixes it. The input contract, class names, palette and ignore index are stored in
the file as JSON under "geoseg" (ONNX: metadata_props; TorchScript: the extra file geoseg.json);
``geoseg.export.read_export_metadata`` reads either.

Writes CKPT with the suffix .onnx or .torchscript.pt unless --output says otherwise, through a
temporary file that is checked against the PyTorch network before it is renamed into place.
"""

import argparse
from pathlib import Path

from geoseg.cli import ArgumentParser, at_least, run_script
from geoseg.export import EXPORT_FORMATS, default_output, describe_export, export_model
from geoseg.files import check_output_file, refuse_overwriting_input


def parse_args() -> argparse.Namespace:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint of this project's training")
    parser.add_argument("--format", choices=EXPORT_FORMATS, default="onnx")
    parser.add_argument(
        "--tile-size",
        type=at_least(1),
        default=512,
        help="the fixed input height and width in pixels",
    )
    parser.add_argument(
        "--bands",
        type=int,
        help="the band count the model will be fed; refused unless the network reads that many",
    )
    parser.add_argument(
        "--batch-size", type=at_least(1), help="fix the batch dimension (default: dynamic)"
    )
    parser.add_argument(
        "--output", type=Path, help="default: CHECKPOINT with the suffix .onnx / .torchscript.pt"
    )
    args = parser.parse_args()
    return args


def main() -> None:
    args = parse_args()
    output = args.output or default_output(args.checkpoint, args.format)
    refuse_overwriting_input(output, args.checkpoint, what="--output")
    check_output_file(output, "--output")
    result = export_model(
        args.checkpoint,
        output,
        format=args.format,
        tile_size=args.tile_size,
        bands=args.bands,
        batch_size=args.batch_size,
    )
    print(describe_export(result))


if __name__ == "__main__":
    run_script(main)
